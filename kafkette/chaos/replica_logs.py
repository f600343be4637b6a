"""Read the batch headers of every replica's log straight from the nodes' data dirs,
after the cluster has stopped (read-only: the files are opened O_RDONLY and nothing is
recovered, truncated or rebuilt).

A partition's log is `<data dir>/<topic>-<partition>/<20-digit base offset>.log`
(kafkette.log.segment); each segment is walked with the log's own recovery scanner,
which stops at the first torn or corrupt batch, as a broker's recovery would. Kafka's
`kafka-dump-log.sh` reads the same files the same way.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

from kafkette.chaos.checker import BatchInfo
from kafkette.log.segment import LOG_SUFFIX, iter_file_batches


def partition_batches(partition_dir: Path) -> list[BatchInfo]:
    """The batches of one replica's log, in offset order ([] when it has none)."""
    out: list[BatchInfo] = []
    try:
        names = sorted(n for n in os.listdir(partition_dir) if n.endswith(LOG_SUFFIX)
                       and n[:-len(LOG_SUFFIX)].isdigit())
    except FileNotFoundError:
        return out
    for name in names:
        fd = os.open(partition_dir / name, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            for _pos, h in iter_file_batches(fd, 0, size):
                out.append(BatchInfo(h.base_offset, h.last_offset, h.partition_leader_epoch,
                                     h.crc))
        finally:
            os.close(fd)
    return out


def replica_logs(data_dirs: Mapping[int, Path], topic: str,
                 partitions: Iterable[int],
                 replicas: Mapping[int, Iterable[int]] | None = None
                 ) -> dict[int, dict[int, list[BatchInfo]]]:
    """partition -> node id -> batches, for the nodes that host a replica of it
    (`replicas`, from Metadata; without it, every node that has the directory)."""
    out: dict[int, dict[int, list[BatchInfo]]] = {}
    for p in partitions:
        nodes = (list(replicas[p]) if replicas and p in replicas else
                 [n for n, d in data_dirs.items() if (Path(d) / f"{topic}-{p}").is_dir()])
        out[p] = {n: partition_batches(Path(data_dirs[n]) / f"{topic}-{p}")
                  for n in sorted(nodes) if n in data_dirs}
    return out
