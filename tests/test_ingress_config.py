"""flashmart's edits to the configuration Serve writes for HAProxy (flashmart/platform.py): the
client's address forwarded, errors as flashmart's 503, retries for reads only, and a bound on what
one replica holds, with the rest of a crowd queued in HAProxy up to the request deadline."""

from __future__ import annotations

import csv
import io
import math
import shutil
import subprocess

import httpx
import pytest

from flashmart.platform import HEALTH_CHECK_TIMEOUT_S, forwarding_haproxy, haproxy_binary

# The parts of a configuration Serve 2.60 writes that the edits anchor on.
SERVE_CONFIG = """\
global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    errorfile 502 /serve/502.http
    errorfile 503 /serve/503.http
    errorfile 504 /serve/504.http
frontend http_frontend
    bind 127.0.0.1:{port}
    use_backend http-flashmart if {{ path_beg / }}
backend http-flashmart
    default-server fastinter 250ms downinter 250ms fall 2 rise 2 inter 5s check
    server SERVE_REPLICA_a 127.0.0.1:{replica_port} check
"""


def edited(tmp_path, settings, text: str) -> str:
    """Run the wrapper as Serve runs HAProxy (`-f FILE`), with `true` in place of HAProxy."""
    wrapper = forwarding_haproxy(tmp_path, shutil.which("true"), settings)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    subprocess.run([wrapper, "-f", str(cfg)], check=True)
    return cfg.read_text()


def test_each_edit_lands_once_where_haproxy_reads_it(tmp_path, settings):
    text = edited(tmp_path, settings, SERVE_CONFIG.format(port=1, replica_port=2))
    lines = text.splitlines()
    defaults = lines[lines.index("defaults") + 1 : lines.index("frontend http_frontend")]
    assert "    option forwardfor" in defaults
    assert f"    timeout queue {math.ceil(settings.request_deadline_s)}s" in defaults
    assert f"    timeout check {HEALTH_CHECK_TIMEOUT_S}s" in defaults
    assert all(f"errorfile 50{n} {tmp_path}/503.http" in text for n in (2, 3, 4))
    frontend = lines[lines.index("frontend http_frontend") + 1 :][:2]
    assert frontend == [
        "    http-request disable-l7-retry unless METH_GET",
        "    http-request set-header x-request-disconnect-disabled ?1",
    ]
    default_server = next(x for x in lines if x.startswith("    default-server "))
    assert default_server.endswith(f" check maxconn {settings.max_ongoing_requests}")
    # HAProxy starts again on every replica change with the file Serve rewrote, or with this one
    assert edited(tmp_path, settings, text) == text


def test_haproxy_accepts_the_edited_configuration(tmp_path, settings):
    binary = haproxy_binary()
    if binary is None:
        pytest.skip("no HAProxy here: Serve uses its own proxy, which these edits do not concern")
    text = edited(tmp_path, settings, SERVE_CONFIG.format(port=1, replica_port=2))
    (tmp_path / "haproxy.cfg").write_text(text)
    check = subprocess.run([binary, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True)
    assert check.returncode == 0, check.stderr.decode()[-2000:]


def test_the_running_ingress_lets_each_replica_hold_max_ongoing_requests(platform):
    """Read from HAProxy itself: its stats list each replica with the limit (`slim`) it enforces."""
    if haproxy_binary() is None:
        pytest.skip("no HAProxy here")
    stats = httpx.get(f"http://127.0.0.1:{platform.haproxy_stats_port}/stats;csv", timeout=10)
    rows = list(csv.DictReader(io.StringIO(stats.text.lstrip("# "))))
    replicas = [r for r in rows if r["svname"].startswith("SERVE_REPLICA_")]
    assert replicas, stats.text[:2000]
    assert {r["slim"] for r in replicas} == {str(platform.max_ongoing_requests)}
