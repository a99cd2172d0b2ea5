"""CPU time and memory of a server's whole process tree (Ray starts many processes).

CPU: user + system seconds of every live process under the roots, read before and after a load
window; a process that exits inside the window loses its share (none do in a steady run).
Memory: the sum of PSS (proportional set size) over the tree, so pages shared between Ray's
worker processes are counted once in total instead of once per process, as RSS would.
"""

from __future__ import annotations

import psutil

from lensgraph.devcluster import descendants


def tree(roots: list[int]) -> list[psutil.Process]:
    procs = []
    for pid in {*roots, *descendants(roots)}:
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            continue
    return procs


def cpu_seconds(roots: list[int]) -> float:
    total = 0.0
    for proc in tree(roots):
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def memory_mb(roots: list[int]) -> float:
    """PSS summed over the tree, in MiB (falls back to RSS where PSS cannot be read)."""
    total = 0
    for proc in tree(roots):
        try:
            info = proc.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except psutil.Error:
            continue
    return round(total / 2**20, 1)
