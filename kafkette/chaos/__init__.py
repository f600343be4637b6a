"""The replication fault campaign: real broker processes, stock clients, faults chosen
by a seed, and a checker that counts lost and duplicated records.

    python -m kafkette.chaos --seed 7 --rounds 20 --brokers 3      # or: make chaos

Modules: `campaign` (the run: cluster, rounds, heal, drain, summary), `workload`
(confluent-kafka producers and consumers in threads), `netns` (network namespaces and
iptables rules for partitions between brokers), `replica_logs` (batch headers read
from each node's segment files), `checker` (pure: histories in, violations out);
with ``--transactional-producers N``, `txn_workload` (confluent-kafka producers with a
transactional.id each, committing and aborting transactions over several partitions)
and `txn_checker` (pure: lost committed writes, aborted reads, torn transactions, a last
stable offset that never reaches the high watermark).

The workload needs confluent-kafka (the `test` extra); the checker needs nothing, so
this package imports no submodule: `from kafkette.chaos.campaign import Campaign`.
"""
