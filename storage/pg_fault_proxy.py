"""A fault injector in front of the embedded PostgreSQL: the lost COMMIT reply.

A real server cannot be made to commit a transaction and then lose its answer, but a network can.
This small proxy (asyncio, on a Unix socket beside the server's) forwards every byte both ways and,
when armed, cuts the client's connection right after the server answered a COMMIT it forwarded: the
transaction is durable, the client only sees its connection drop. Whoever wrote must then find out
what is stored instead of guessing (the inventory journal, the checkout saga).

Chaos runs only (`Settings.database_fault_proxy`); it is never in front of a production database.

    python -m flashmart.storage.pg_fault_proxy --dir DATA/pg-fault-proxy --upstream DATA/pg/.s.PGSQL.5432
    # arm it: one JSON line on DATA/pg-fault-proxy/control.sock -> {"cut_commits": 3, "duration_s": 10}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from flashmart.storage import embedded

SOCKET_NAME = ".s.PGSQL.5432"  # libpq's name for port 5432 in a socket directory
CONTROL_NAME = "control.sock"
PID_NAME = "proxy.pid"
CHUNK_BYTES = 65536
# startup-phase request codes (no type byte): the client sends another untyped message after these
SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102


def proxy_dir(data_dir: Path) -> Path:
    return data_dir / "pg-fault-proxy"


def is_commit(sql: bytes) -> bool:
    words = sql.rstrip(b"\x00").strip().rstrip(b";").strip().upper()
    return words in (b"COMMIT", b"END", b"COMMIT TRANSACTION", b"COMMIT WORK")


class CommitCutter:
    """How many of the next COMMITs lose their reply, and until when the arming holds."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.left, self.until, self.cut_total = 0, 0.0, 0

    def arm(self, count: int, duration_s: float) -> None:
        self.left, self.until = max(0, count), self.clock() + max(0.0, duration_s)

    def take(self) -> bool:
        if self.left > 0 and self.clock() < self.until:
            self.left -= 1
            self.cut_total += 1
            return True
        return False

    def state(self) -> dict:
        armed = self.left if self.clock() < self.until else 0
        return {"armed": armed, "cut_total": self.cut_total}


async def _read_message(reader: asyncio.StreamReader, typed: bool) -> tuple[bytes, bytes]:
    kind = await reader.readexactly(1) if typed else b""
    head = await reader.readexactly(4)
    (length,) = struct.unpack("!I", head)
    body = await reader.readexactly(length - 4)
    return kind, head + body


async def _client_to_server(reader, upstream_writer, cutter: CommitCutter, cut: asyncio.Event):
    # startup phase: untyped messages, possibly SSL/GSS requests before the startup packet
    while True:
        _, raw = await _read_message(reader, typed=False)
        upstream_writer.write(raw)
        await upstream_writer.drain()
        (code,) = struct.unpack("!I", raw[4:8])
        if code == CANCEL_REQUEST:
            return
        if code not in (SSL_REQUEST, GSSENC_REQUEST):
            break
    commit_parsed = False  # extended protocol: Parse("COMMIT") ... Sync
    while True:
        kind, raw = await _read_message(reader, typed=True)
        body = raw[4:]
        lose_reply = False
        if kind == b"Q" and is_commit(body):
            lose_reply = cutter.take()
        elif kind == b"P":
            commit_parsed = is_commit(body.split(b"\x00", 2)[1])
        elif kind == b"S" and commit_parsed:
            commit_parsed = False
            lose_reply = cutter.take()
        if lose_reply:
            cut.set()  # before forwarding: whatever the server says next is this COMMIT's answer
        upstream_writer.write(kind + raw)
        await upstream_writer.drain()
        if lose_reply:
            return


async def _server_to_client(upstream_reader, writer, cut: asyncio.Event):
    while True:
        data = await upstream_reader.read(CHUNK_BYTES)
        if not data:
            return
        if cut.is_set():
            return  # the server answered the COMMIT (it is durable): the answer is dropped
        writer.write(data)
        await writer.drain()


async def _serve_client(reader, writer, upstream: str, cutter: CommitCutter) -> None:
    try:
        up_reader, up_writer = await asyncio.open_unix_connection(upstream)
    except OSError:
        writer.close()
        return
    cut = asyncio.Event()
    tasks = [
        asyncio.ensure_future(_client_to_server(reader, up_writer, cutter, cut)),
        asyncio.ensure_future(_server_to_client(up_reader, writer, cut)),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if tasks[0] in done and cut.is_set() and not tasks[1].done():
            await asyncio.wait([tasks[1]], timeout=30)  # until the COMMIT's answer came back
    finally:
        for t in tasks:
            t.cancel()
        for w in (writer, up_writer):
            w.close()


async def _control(reader, writer, cutter: CommitCutter) -> None:
    try:
        line = await reader.readline()
        body = json.loads(line or b"{}")
        if "cut_commits" in body:
            cutter.arm(int(body["cut_commits"]), float(body.get("duration_s", 10)))
        writer.write(json.dumps(cutter.state()).encode() + b"\n")
        await writer.drain()
    except (ValueError, OSError):
        pass
    finally:
        writer.close()


async def run_proxy(directory: Path, upstream: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    cutter = CommitCutter()
    listen, control = directory / SOCKET_NAME, directory / CONTROL_NAME
    for path in (listen, control):
        path.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(
        lambda r, w: _serve_client(r, w, upstream, cutter), path=str(listen)
    )
    ctl = await asyncio.start_unix_server(lambda r, w: _control(r, w, cutter), path=str(control))
    async with server, ctl:
        await asyncio.gather(server.serve_forever(), ctl.serve_forever())


# --- started beside the embedded PostgreSQL -----------------------------------------------------------


def start_pg_fault_proxy(data_dir: Path) -> str:
    """Start the proxy in its own session (it outlives the CLI, as the servers do); returns the
    database URL that goes through it."""
    directory = proxy_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    url = f"postgresql://postgres:@/flashmart?host={directory}"
    if pg_fault_proxy_pid(data_dir) is not None and (directory / CONTROL_NAME).exists():
        return url
    upstream = embedded.postgres_dir(data_dir) / SOCKET_NAME
    log = open(directory / "proxy.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flashmart.storage.pg_fault_proxy", "--dir", str(directory)]
        + ["--upstream", str(upstream)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (directory / PID_NAME).write_text(str(proc.pid))
    embedded.wait_until(
        lambda: control(data_dir) is not None,
        60,
        f"the PostgreSQL fault proxy did not start; see {directory / 'proxy.log'}",
    )
    return url


def stop_pg_fault_proxy(data_dir: Path) -> bool:
    return embedded._stop_pidfile(proxy_dir(data_dir) / PID_NAME)


def pg_fault_proxy_pid(data_dir: Path) -> int | None:
    return embedded._read_pid(proxy_dir(data_dir) / PID_NAME)


def control(data_dir: Path, command: dict | None = None, timeout_s: float = 5) -> dict | None:
    """Send one command ({"cut_commits": n, "duration_s": s}, or nothing for the state); None when
    no proxy answers."""
    path = proxy_dir(data_dir) / CONTROL_NAME
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout_s)
            s.connect(str(path))
            s.sendall(json.dumps(command or {}).encode() + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
        return json.loads(answer)
    except (OSError, ValueError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m flashmart.storage.pg_fault_proxy")
    parser.add_argument("--dir", required=True, help="where its socket and control socket live")
    parser.add_argument("--upstream", required=True, help="the PostgreSQL server's Unix socket")
    args = parser.parse_args()
    asyncio.run(run_proxy(Path(args.dir), args.upstream))


if __name__ == "__main__":
    main()
