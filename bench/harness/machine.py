"""Where the machine's CPU went during a phase (per process, from /proc: no extra packages), the
memory of a process sampled while it runs, waiting for a quiet machine, and the open files limit.
Needs no Django."""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from dataclasses import dataclass, field

from . import config

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def machine_busy_ticks() -> tuple[int, int]:
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _stat_fields(pid: int | str) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def tree_cpu_s(root_pid: int) -> float:
    """CPU seconds used so far by a process and its live descendants (uvicorn's workers)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                parents[int(entry)] = int(_stat_fields(entry)[1])
    pids, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in pids]
        pids.update(children)
        frontier += children
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat_fields(pid)
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLOCK_TICKS


def background_busy_pct(seconds: float = 2.0) -> float:
    """How busy the machine is with nothing of ours running (other people's tests...)."""
    busy0, total0 = machine_busy_ticks()
    time.sleep(seconds)
    busy, total = machine_busy_ticks()
    return 100 * (busy - busy0) / max(1, total - total0)


def wait_until_quiet() -> float:
    """Wait (up to --quiet-wait s) until the machine is less busy than --quiet-below %;
    returns the background figure last seen."""
    args = config.ARGS
    deadline = time.monotonic() + args.quiet_wait
    while True:
        busy = background_busy_pct()
        if args.quiet_below is None or busy <= args.quiet_below or time.monotonic() > deadline:
            return busy
        print(f"  (machine {busy:.0f} % busy with other work; waiting)", flush=True)


def raise_open_files_limit(needed: int) -> None:
    """Sockets: each client holds one, the app one per client and one per agent call; children
    inherit the limit, so it is raised here, before they start."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise SystemExit(f"open files: need {needed}, the hard limit is {hard} (ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (kB) and Threads of a process."""
    wanted = {"VmRSS", "VmHWM", "Threads"}
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in wanted:
                values[name] = int(rest.split()[0])
    return values


class MemorySampler:
    """The highest VmRSS and thread count of a process, read every `every_s` in a thread of
    ours, and its VmHWM (the kernel's own peak) at the end."""

    def __init__(self, pid: int, every_s: float = 0.2):
        self.pid, self.every_s = pid, every_s
        self.peak_rss_kb = self.peak_threads = self.hwm_kb = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                values = proc_status(self.pid)
                self.peak_rss_kb = max(self.peak_rss_kb, values["VmRSS"])
                self.peak_threads = max(self.peak_threads, values["Threads"])
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> MemorySampler:
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()
        with contextlib.suppress(OSError):
            self.hwm_kb = proc_status(self.pid)["VmHWM"]


@dataclass
class CpuUse:
    """CPU seconds per process over a phase, and the whole machine's busy share."""

    wall_s: float
    seconds: dict[str, float]
    machine_busy_pct: float

    def pct(self, name: str) -> float:
        """Of all cores: 50 % is one core of two."""
        return 100 * self.seconds.get(name, 0.0) / self.wall_s / CORES

    @property
    def others_pct(self) -> float:
        """Everything else on the machine: other people's tests, the kernel, ..."""
        ours = sum(self.pct(name) for name in self.seconds)
        return max(0.0, self.machine_busy_pct - ours)


@dataclass
class CpuWindow:
    """`with CpuWindow({"app": pid, ...}, pg_pids=...) as cpu:` then cpu.use. `pg_pids` is
    called at both ends: the PostgreSQL backends of the benchmark database come and go."""

    pids: dict[str, int]
    pg_pids: object = None  # a callable returning the backends' pids, or None
    use: CpuUse | None = None
    _start: dict = field(default_factory=dict)

    def _pg_cpu(self) -> dict[int, float]:
        found = {}
        for pid in self.pg_pids() if self.pg_pids else []:
            with contextlib.suppress(OSError):
                found[pid] = tree_cpu_s(pid)
        return found

    def __enter__(self) -> CpuWindow:
        self._start = {
            "procs": {name: tree_cpu_s(pid) for name, pid in self.pids.items()},
            "client": time.process_time(),
            "pg": self._pg_cpu(),
            "busy": machine_busy_ticks(),
            "wall": time.monotonic(),
        }
        return self

    def __exit__(self, *exc: object) -> None:
        start = self._start
        seconds = {name: tree_cpu_s(pid) - start["procs"][name] for name, pid in self.pids.items()}
        seconds["load client"] = time.process_time() - start["client"]
        if self.pg_pids:
            pg_end = self._pg_cpu()  # a backend opened meanwhile counts from zero
            seconds["PostgreSQL"] = sum(s - start["pg"].get(pid, 0.0) for pid, s in pg_end.items())
        busy, total = machine_busy_ticks()
        busy0, total0 = start["busy"]
        self.use = CpuUse(
            wall_s=time.monotonic() - start["wall"],
            seconds=seconds,
            machine_busy_pct=100 * (busy - busy0) / max(1, total - total0),
        )
