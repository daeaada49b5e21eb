"""Who used the machine during a sale: the load average, sampled, and the CPU seconds of each kind of
process (the load generator, Serve replicas, actors, PostgreSQL, Redis, ..., other work on the
machine). A run on a shared 2-core machine says this way whether the load generator, flashmart or
someone else's work saturated the cores."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

LOAD_SAMPLE_INTERVAL_S = 1.0
OTHER_WORK = "other work on the machine"
LOAD_GENERATOR = "load generator (driver processes)"


def kind_of(name: str, cmdline: str) -> str:
    """The group a platform process's CPU is reported under, from its name and command line."""
    if cmdline.startswith("ray::"):
        actor = cmdline.split()[0][len("ray::") :]
        if actor.startswith("ServeReplica"):
            return "Serve replicas"
        if actor.startswith(("ProxyActor", "ServeController", "SERVE_")):
            return "Serve proxy and controller"
        if actor.startswith(("DashboardAgent", "RuntimeEnvAgent", "IDLE")):
            return "Ray system"
        return "actors"
    if "multiprocessing" in cmdline:
        return LOAD_GENERATOR
    for needle, kind in (
        ("haproxy", "HAProxy"),
        ("postgres", "PostgreSQL"),
        ("redis-server", "Redis"),
        ("localstripe", "localstripe"),
        ("gateway-proxy", "gateway fault proxy"),
        ("raylet", "Ray system"),
        ("gcs_server", "Ray system"),
        ("/ray/", "Ray system"),  # dashboard, monitors, log monitor
    ):
        if needle in name or needle in cmdline:
            return kind
    return "other flashmart processes"


def actor_class(cmdline: str) -> str:
    """An actor process's class: Ray names it "ray::<class>" or "ray::<class>.<method running>"."""
    return cmdline.split()[0][len("ray::") :].split(".")[0]


class MachineLoad:
    """CPU seconds per kind of process between start() and stop(), and the load average meanwhile.

    The platform's processes are the simulator's own descendants (a private platform, the load
    processes) and the processes whose command line names the platform's data directory or its Ray
    GCS port (embedded servers and a Ray head started by `flashmart up`), with their descendants
    (Ray's workers name themselves `ray::Actor` and keep no arguments)."""

    def __init__(self, data_dir: Path | str, ray_gcs_port: int | None = None):
        self.marks = [str(Path(data_dir).resolve())]
        if ray_gcs_port:
            self.marks += [f":{ray_gcs_port} ", f"={ray_gcs_port} ", f":{ray_gcs_port}\0"]
        self.me = os.getpid()
        self._cpu0: dict[int, float] = {}
        self._t0 = 0.0
        self._loads: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_load, daemon=True, name="load-avg")

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._load_at_start = os.getloadavg()
        self._busy0 = _machine_busy_s()
        self._cpu0 = {pid: cpu for pid, (cpu, _) in _cpu_by_pid().items()}
        self._thread.start()

    def _sample_load(self) -> None:
        while not self._stop.wait(LOAD_SAMPLE_INTERVAL_S):
            self._loads.append(os.getloadavg()[0])

    def stop(self, ended: dict[str, float] | None = None) -> dict:
        """`ended`: CPU seconds of processes that have ended by now, as they measured it themselves
        (the load processes), by kind."""
        self._stop.set()
        self._thread.join(5)
        wall_s = time.monotonic() - self._t0
        busy_s = _machine_busy_s() - self._busy0
        now = _cpu_by_pid()
        ours = self._platform_pids(now)
        by_kind: Counter = Counter(ended or {})
        by_actor: Counter = Counter()  # the "actors" kind by actor class (which actor costs what)
        for pid, (cpu, proc) in now.items():
            if pid not in ours:
                continue
            used = cpu - self._cpu0.get(pid, 0.0)  # a process started meanwhile: all of its CPU
            if pid == self.me:
                kind = "simulator (this process; the load generator too when it is one process)"
            else:
                name, cmdline = _describe(proc)
                kind = kind_of(name, cmdline)
                if kind == "actors":
                    by_actor[actor_class(cmdline)] += max(0.0, used)
            by_kind[kind] += max(0.0, used)
        # everything else the cores did, processes that came and went included (a test run's
        # workers), from the machine's own counters
        by_kind[OTHER_WORK] = max(0.0, busy_s - sum(by_kind.values()))
        cores = psutil.cpu_count() or 1
        loads = self._loads or [os.getloadavg()[0]]
        return {
            "cores": cores,
            "wall_s": round(wall_s, 1),
            "load_average_1min": {
                "at_start": round(self._load_at_start[0], 2),
                "min": round(min(loads), 2),
                "mean": round(sum(loads) / len(loads), 2),
                "max": round(max(loads), 2),
                "at_end": round(os.getloadavg()[0], 2),
            },
            "busy_share": round(busy_s / (wall_s * cores), 3),
            # CPU seconds and share of the machine (cores x wall time) per kind of process; a platform
            # process that ended before the sale did is counted in other work
            "cpu_by_process_kind": {
                kind: {"cpu_s": round(s, 1), "share_of_machine": round(s / (wall_s * cores), 3)}
                for kind, s in by_kind.most_common()
            },
            "actors_cpu_s": {name: round(s, 1) for name, s in by_actor.most_common() if s >= 0.05},
        }

    def _platform_pids(self, procs: dict[int, tuple[float, psutil.Process]]) -> set[int]:
        roots = {self.me}
        for pid, (_, proc) in procs.items():
            _, cmdline = _describe(proc)
            if any(m in cmdline + "\0" for m in self.marks):
                roots.add(pid)
        children: dict[int, list[int]] = {}
        for pid, (_, proc) in procs.items():
            try:
                children.setdefault(proc.ppid(), []).append(pid)
            except psutil.Error:
                pass
        ours, todo = set(), list(roots)
        while todo:
            pid = todo.pop()
            if pid not in ours:
                ours.add(pid)
                todo.extend(children.get(pid, ()))
        return ours


def _machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and I/O wait)."""
    t = psutil.cpu_times()  # (guest time is already in user and nice; steal is not this machine's)
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def _cpu_by_pid() -> dict[int, tuple[float, psutil.Process]]:
    out = {}
    for proc in psutil.process_iter():
        try:
            t = proc.cpu_times()
            out[proc.pid] = (t.user + t.system, proc)
        except psutil.Error:
            pass
    return out


def _describe(proc: psutil.Process) -> tuple[str, str]:
    try:
        return proc.name(), " ".join(proc.cmdline())
    except psutil.Error:
        return "", ""
