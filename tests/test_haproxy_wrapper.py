"""The script Serve runs as its HAProxy binary edits the configuration Serve wrote before HAProxy
reads it: the client's address forwarded, flashmart's 503 page, no retry of a request that may have
acted, and no log line for a request that went well unless Serve's request metrics want them."""

from __future__ import annotations

import subprocess

import pytest

from flashmart.platform import forwarding_haproxy

SERVE_CONFIG = """global
    log 127.0.0.1:514 local0 info
defaults
    mode http
    log global
    option httplog
    errorfile 502 /serve/500.http
    errorfile 503 /serve/500.http
frontend http_frontend
    bind *:8000
"""


def _edited(tmp_path, log_requests: bool) -> str:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(SERVE_CONFIG)
    wrapper = forwarding_haproxy(tmp_path, "/bin/true", log_requests=log_requests)
    subprocess.run([wrapper, "-f", str(cfg)], check=True)
    return cfg.read_text()


@pytest.mark.parametrize("log_requests", [False, True])
def test_the_wrapper_edits_serves_haproxy_configuration(tmp_path, log_requests):
    text = _edited(tmp_path, log_requests)
    assert "defaults\n    option forwardfor\n" in text
    assert f"errorfile 503 {tmp_path / '503.http'}" in text and "/serve/500.http" not in text
    assert "http_frontend\n    http-request disable-l7-retry unless METH_GET" in text
    quiet = "    option httplog\n    option dontlog-normal\n" in text
    assert quiet is not log_requests


def test_the_wrapper_edits_a_configuration_once(tmp_path):
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(SERVE_CONFIG)
    wrapper = forwarding_haproxy(tmp_path, "/bin/true")
    for _ in range(2):  # Serve runs it at every start and reload of the same file
        subprocess.run([wrapper, "-f", str(cfg)], check=True)
    assert cfg.read_text().count("option dontlog-normal") == 1
    assert cfg.read_text().count("option forwardfor") == 1
