"""One partition's next state (leader, ISR, KIP-966 ELR) after a change: the facts of
KRaft's PartitionChangeBuilder, as a pure function of the current PartitionImage.

Every path that moves a partition goes through `partition_change`: a broker fenced
(it leaves the ISR and leadership), unfenced (it may lead a leaderless partition),
an AlterPartition from the leader (a new ISR), ElectLeaders and the preferred-leader
balancer (a PREFERRED or UNCLEAN election). It returns the fields of the
PartitionChangeRecord to write, or None when nothing changes.

Election order, as Kafka 4.1 (ELR on by default for new clusters):
1. the current leader, if it is still in the target ISR and acceptable (live);
   for PREFERRED the first replica goes before it;
2. the first replica, in replica order, in the target ISR, or in the ELR when the
   target ISR is empty (KIP-966);
3. the last known leader (the leader when the ISR went empty), if live and the ISR
   and ELR are both empty: an unclean election, as before KIP-966 when the last ISR
   member came back;
4. UNCLEAN only (unclean.leader.election.enable, or ElectLeaders UNCLEAN): the first
   live replica. The ISR becomes just the new leader and the leader recovery state
   RECOVERING (KIP-704).

KIP-966 ELR upkeep: while the target ISR is below the effective min.insync.replicas,
members that leave it go into the ELR (the leader's high watermark cannot advance
past what they hold, so they are safe leaders); once the ISR reaches min ISR again
the ELR is cleared. An ELR member elected leader becomes the ISR. With the ELR on,
the ISR may become empty (the last member moves to the ELR); with it off the last
member stays in the ISR and the partition is leaderless, as Kafka before 4.0.

Real Kafka differences: no reassignment (adding/removing replicas, directories);
the ISR-shrink leader epoch bump of metadata versions before 3.6 (KAFKA-15021) is
not done: an ISR-only change bumps the partition epoch only. KRaft keeps ELR sets
unordered; here they follow replica order, so records are deterministic.
"""
from __future__ import annotations

import enum
from typing import Callable, Collection, Sequence

from kafkette.controller.metadata_image import RECOVERING, PartitionImage

NO_LEADER = -1


class Election(enum.Enum):
    PREFERRED = "preferred"  # the first replica if it can lead, else as ONLINE
    ONLINE = "online"        # keep the partition online from the ISR / ELR only
    UNCLEAN = "unclean"      # ... or from any live replica (may lose data)


def partition_change(p: PartitionImage, *, acceptable: Callable[[int], bool],
                     min_isr: int, target_isr: Sequence[int] | None = None,
                     election: Election = Election.ONLINE, elr_enabled: bool = True,
                     unclean_shutdown: Collection[int] = (),
                     target_recovery_state: int | None = None) -> dict | None:
    """The changed fields of p's PartitionChangeRecord (leader with the bumped
    leader_epoch, isr, elr, last_known_elr, leader_recovery_state), or None.

    `acceptable(r)`: r may lead (registered, unfenced). `min_isr`: the effective
    min.insync.replicas (capped at the replication factor, as KRaft).
    `target_isr`: the ISR wanted (default: the current one). `unclean_shutdown`:
    replicas that lost their unflushed data and so leave the ELR too."""
    isr = list(p.isr if target_isr is None else target_isr)
    elr = list(p.elr)
    if elr_enabled:
        if len(isr) >= min_isr:
            elr = []
        else:
            leaving = (set(elr) | set(p.isr)) - set(isr) - set(unclean_shutdown)
            elr = [r for r in p.replicas if r in leaving]

    def can_lead(r: int) -> bool:
        return (r in isr or (not isr and r in elr)) and acceptable(r)

    if election is Election.PREFERRED:
        order = [p.replicas[0], p.leader, *p.replicas[1:]] if p.replicas else [p.leader]
    else:
        order = [p.leader, *p.replicas]
    leader = next((r for r in order if r != NO_LEADER and can_lead(r)), NO_LEADER)
    unclean = False
    if leader == NO_LEADER:
        last = p.last_known_elr
        if (elr_enabled and not isr and not elr and len(last) == 1
                and acceptable(last[0])):
            leader, unclean = last[0], True
        elif election is Election.UNCLEAN:
            leader = next((r for r in p.replicas if acceptable(r)), NO_LEADER)
            unclean = leader != NO_LEADER

    rec: dict = {}
    if leader != p.leader:
        rec["leader"] = leader
        rec["leader_epoch"] = p.leader_epoch + 1
        if leader in elr:
            isr, elr = [leader], [r for r in elr if r != leader]
        if unclean:
            rec["isr"] = [leader]
            if p.leader_recovery_state != RECOVERING:
                rec["leader_recovery_state"] = RECOVERING
    if "isr" in rec or not elr_enabled:
        elr = []  # an unclean leader's ISR is all there is; no ELR without KIP-966
    if elr != list(p.elr):
        rec["elr"] = elr
    if "isr" not in rec and (isr or elr_enabled) and isr != list(p.isr):
        rec["isr"] = isr
    if elr_enabled:
        if rec.get("isr") == [] and p.leader != NO_LEADER \
                and p.last_known_elr != (p.leader,):
            rec["last_known_elr"] = [p.leader]  # the ISR goes empty: remember its leader
        elif p.last_known_elr and rec.get("leader", p.leader) != NO_LEADER:
            rec["last_known_elr"] = []
    if target_recovery_state is not None and target_recovery_state != p.leader_recovery_state:
        rec["leader_recovery_state"] = target_recovery_state
    return rec or None
