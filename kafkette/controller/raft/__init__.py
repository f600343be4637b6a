"""The Raft controller quorum, in the style of KRaft (KIP-595, pre-vote KIP-996).

Modules, from the bottom up:
- messages.py   the core's own messages (no wire format)
- storage.py    the storage interface and MemoryLog (the simulator's)
- core.py       the sans-IO state machine: roles, elections, pull replication, commit,
                snapshots (its docstring has the transitions, and why pull, not push)
- sim.py        the deterministic simulation (`make sim SEEDS=N`)
- file_log.py   the log on disk: `<log.dirs>/__cluster_metadata-0/` (PartitionLog,
                quorum-state, `<end>-<epoch>.checkpoint` snapshots)
- transport.py  the controller listener and ControllerChannel (Kafka frames, the only
                module here that sees generated wire messages)
- driver.py     runs the core on the asyncio loop
- quorum.py     RaftQuorum, what the controller uses

What real KRaft does that this does not: binary metadata records with KRaft's schemas
(ours are JSON values); dynamic voter sets (KIP-853: AddRaftVoter / RemoveRaftVoter,
directory ids, controller.quorum.bootstrap.servers) — the voters here are the static
`controller.quorum.voters`; snapshots as record batches with header/footer control
records (ours are the state machine's bytes); Vote v2 with its PreVote field (our
specs stop at v1, see transport.py); a cluster-id check on every quorum request.
"""
