"""A sale's report says who used the machine: the CPU of the platform's processes (the simulator's own
descendants, and the processes whose command line names the platform's data directory) by kind,
apart from other work on the machine."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

import psutil

from flashmart.sim.machine_load import OTHER_WORK, MachineLoad, actor_class, kind_of

SPIN_S = 0.5
# spin for SPIN_S of CPU, then stay alive (a process that has ended can no longer be read)
SPIN = (
    "import sys, time\n"
    "end = time.process_time() + float(sys.argv[1])\n"
    "while time.process_time() < end: pass\n"
    "time.sleep(60)\n"
)


def _detached(*args: str) -> int:
    """A process that is not this one's descendant (the shell that starts it exits at once)."""
    line = " ".join(shlex.quote(a) for a in (sys.executable, "-c", SPIN, *args))
    out = subprocess.run(["sh", "-c", f"{line} >/dev/null 2>&1 & echo $!"], capture_output=True)
    return int(out.stdout)


def _cpu_s(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system


def test_platform_processes_are_told_apart_from_other_work(tmp_path):
    data_dir = tmp_path / "platform-data"
    load = MachineLoad(data_dir, ray_gcs_port=None)
    load.start()
    child = subprocess.Popen([sys.executable, "-c", SPIN, str(SPIN_S)])  # a private platform's part
    server = _detached(str(SPIN_S), str(data_dir.resolve()))  # an embedded server of `flashmart up`
    stranger = _detached(str(SPIN_S), str(tmp_path / "someone-elses-data"))
    pids = [child.pid, server, stranger]
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and min(map(_cpu_s, pids)) < SPIN_S:
            time.sleep(0.1)
        report = load.stop()
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        child.wait()
    ours = report["cpu_by_process_kind"]["other flashmart processes"]["cpu_s"]
    # the child and the server spun SPIN_S each (plus their interpreters' start); the stranger's
    # SPIN_S is other work
    assert 2 * SPIN_S <= ours + 0.05 < 3 * SPIN_S, report
    assert report["cpu_by_process_kind"][OTHER_WORK]["cpu_s"] >= SPIN_S - 0.05
    loads = report["load_average_1min"]
    assert loads["min"] <= loads["mean"] <= loads["max"]


def test_process_kinds_from_names_and_command_lines():
    assert kind_of("python", "ray::ServeReplica:flashmart:Api") == "Serve replicas"
    assert kind_of("python", "ray::ProxyActor") == "Serve proxy and controller"
    assert kind_of("python", "ray::InventoryShard.reserve") == "actors"
    assert kind_of("python", "ray::IDLE") == "Ray system"
    assert actor_class("ray::InventoryShard.reserve") == "InventoryShard"
    assert actor_class("ray::RecommendationActor") == "RecommendationActor"
    assert kind_of("postgres", "/x/pginstall/bin/postgres -D /data/pg") == "PostgreSQL"
    assert kind_of("redis-server", "/x/redis-server unixsocket:/d/redis.sock") == "Redis"
    assert kind_of("python", "python -m flashmart.storage.localstripe_server --port 1") == (
        "localstripe"
    )
    spawned = "python -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5)"
    assert kind_of("python", spawned) == "load generator (driver processes)"
