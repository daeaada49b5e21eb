"""The `flashmart` command as an operator runs it: up, status, user create, down, up again (data
kept), and the clear one-line failures of bad set-ups with nothing left running."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flashmart.storage.embedded import free_port

FLASHMART = str(Path(sys.executable).parent / "flashmart")


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory, machine_slot) -> dict[str, str]:
    data = tmp_path_factory.mktemp("cli-data")
    ports = {
        name: str(free_port())
        for name in (
            "HTTP_PORT",
            "LOCALSTRIPE_PORT",
            "OBJECT_STORE_PORT",
            "RAY_DASHBOARD_PORT",
            "RAY_GCS_PORT",
            "HAPROXY_STATS_PORT",
            "HAPROXY_METRICS_PORT",
            "SERVE_FALLBACK_HTTP_PORT",
            "SERVE_FALLBACK_GRPC_PORT",
        )
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASHMART_", "RAY_"))}
    env.update({f"FLASHMART_{k}": v for k, v in ports.items()})
    env["FLASHMART_DATA_DIR"] = str(data)
    yield env
    subprocess.run([FLASHMART, "down"], env=env, capture_output=True, timeout=300)


def run(
    env: dict, *args: str, timeout: int = 600, stdin: str | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FLASHMART, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin if stdin is not None else "",
    )


def test_up_status_user_down_up_keeps_data(cli_env):
    up = run(cli_env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "flashmart is up" in up.stdout
    # flashmart's ~25 actor processes are expected: no raylet warning about their number, no INFO
    assert "worker processes have been started" not in up.stdout + up.stderr
    assert "INFO" not in up.stdout + up.stderr

    again = run(cli_env, "up")
    assert again.returncode == 0 and "already running" in again.stdout

    status = run(cli_env, "status", "--json")
    report = json.loads(status.stdout)
    assert status.returncode == 0 and report["healthy"], status.stdout
    assert report["ingress"] in ("haproxy", "default-proxy")
    assert {p["name"] for p in report["parts"]} >= {
        "api",
        "docs",
        "ray-dashboard",
        "postgres",
        "redis",
        "payment-gateway",
        "watchdog",
    }

    created = run(
        cli_env,
        "user",
        "create",
        "--email",
        "ops@example.com",
        "--role",
        "admin",
        "--password-stdin",
        stdin="s3cret-pass\n",
    )
    assert created.returncode == 0, created.stderr
    duplicate = run(
        cli_env,
        "user",
        "create",
        "--email",
        "ops@example.com",
        "--role",
        "admin",
        "--password-stdin",
        stdin="s3cret-pass\n",
    )
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr

    down = run(cli_env, "down")
    assert down.returncode == 0 and "postgres" in down.stdout
    assert run(cli_env, "status").returncode == 1  # everything is down

    up2 = run(cli_env, "up")
    assert up2.returncode == 0, up2.stdout + up2.stderr
    # the account made before `down` is still there: log in with it over HTTP
    import httpx

    api = f"http://127.0.0.1:{cli_env['FLASHMART_HTTP_PORT']}"
    login = httpx.post(
        f"{api}/api/v1/auth/login",
        json={"email": "ops@example.com", "password": "s3cret-pass"},
        timeout=30,
    )
    assert login.status_code == 200, login.text
    assert run(cli_env, "down").returncode == 0


def test_port_taken_gives_one_line_and_leaves_nothing_running(cli_env, tmp_path):
    env = {
        **cli_env,
        "FLASHMART_DATA_DIR": str(tmp_path / "data"),
        "FLASHMART_LOCALSTRIPE_PORT": str(free_port()),
    }
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", int(env["FLASHMART_LOCALSTRIPE_PORT"])))
        blocker.listen()
        result = run(env, "up")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "is taken by another program" in result.stderr
    assert not (tmp_path / "data" / "pg" / "postmaster.pid").exists(), "PostgreSQL was left running"


def test_unreachable_database_gives_one_line(cli_env, tmp_path):
    env = {
        **cli_env,
        "FLASHMART_DATA_DIR": str(tmp_path / "data"),
        "FLASHMART_DATABASE_URL": f"postgresql://nobody@127.0.0.1:{free_port()}/nothing?connect_timeout=2",
    }
    result = run(env, "up")
    assert result.returncode == 1
    assert (
        "Traceback" not in result.stderr
        and "the configured database does not answer" in result.stderr
    )
    assert not (tmp_path / "data" / "redis" / "redis.pid").exists(), "Redis was left running"


def test_bad_role_is_refused(cli_env):
    result = run(
        cli_env,
        "user",
        "create",
        "--email",
        "x@example.com",
        "--role",
        "wizard",
        "--password-stdin",
        stdin="longenough\n",
    )
    assert result.returncode == 1 and "unknown role" in result.stderr


def test_password_is_not_taken_from_the_command_line(cli_env):
    """A password in argv is seen by every user of the machine (ps) and kept in shell history."""
    on_argv = run(cli_env, "user", "create", "--email", "x@example.com", "--password", "longenough")
    assert on_argv.returncode != 0 and "--password" in on_argv.stderr
    short = run(
        cli_env, "user", "create", "--email", "x@example.com", "--password-stdin", stdin="short\n"
    )
    assert short.returncode == 1 and "at least 8 characters" in short.stderr
