"""Fuzz the whole OpenAPI document with schemathesis against a running flashmart: no 5xx, and every
documented response must match its schema.

    scripts/fuzz.sh                       # start a private platform (temp dir, free ports), fuzz, stop it
    scripts/fuzz.sh --url http://127.0.0.1:8000 --token <access token>   # fuzz a running deployment

By default it runs once anonymously and once per role in --roles, each with a fresh account's
access token, so both the 401/403 paths and the authorised paths are exercised.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


def _schemathesis(url: str, token: str | None, args, label: str, report_dir: Path) -> int:
    cmd = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{url}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(args.max_examples),
        "--workers",
        str(args.workers),
        "--phases",
        args.phases,
        "--seed",
        str(args.seed),
        "--no-color",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "30",
        "--report",
        "junit",
        "--report-junit-path",
        str(report_dir / f"fuzz-{label}.xml"),
    ]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if args.max_time:
        cmd += ["--max-time", str(args.max_time)]
    print(
        "\n=== schemathesis as "
        + f"{label}: {' '.join(c if 'Bearer' not in c else 'Authorization: Bearer ***' for c in cmd)}",
        flush=True,
    )
    return subprocess.run(cmd).returncode


def _tokens(settings, roles: list[str]) -> dict[str, str]:
    """A fresh account per role (staff created in the database, as `flashmart user create` does)."""
    import httpx
    import psycopg
    from psycopg.rows import dict_row

    from flashmart.storage.users import create_user

    password = uuid.uuid4().hex
    tokens = {}
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        for role in roles:
            email = f"fuzz-{role}-{uuid.uuid4().hex[:8]}@example.com"
            create_user(conn, email, password, f"Fuzz {role}", role)
            r = httpx.post(
                f"{settings.api_url}/api/v1/auth/login",
                json={"email": email, "password": password},
                timeout=30,
            )
            r.raise_for_status()
            tokens[role] = r.json()["access_token"]
    return tokens


def _base_settings(data: Path):
    from flashmart.settings import Settings

    # every port free (HAProxy's stats and metrics listeners too), so the fuzz platform runs beside
    # another flashmart on the same machine
    return Settings.on_free_ports(
        data,
        serve_replicas_min=1,
        serve_replicas_max=1,
        access_token_ttl_s=3600,
    )


def _private_platform(base):
    from flashmart.platform import deploy, serve_env, start_backing_services

    settings = start_backing_services(base)
    import ray

    os.environ.update(serve_env(settings))
    # Serve's default proxy: fuzzing tests the application, and HAProxy's extra listeners are the
    # one thing that can collide with other platforms on a busy machine
    os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "0"
    ray.init(
        address="local",
        num_cpus=4,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
        namespace="flashmart",
    )
    deploy(settings)
    return settings


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", help="fuzz this running API instead of starting a private platform")
    p.add_argument("--token", help="access token to send with --url (omit for anonymous only)")
    p.add_argument(
        "--roles", default="customer,seller,admin", help="roles to fuzz as (private platform)"
    )
    p.add_argument(
        "--max-examples", type=int, default=25, help="test cases per operation and phase"
    )
    p.add_argument("--phases", default="examples,coverage,fuzzing")
    p.add_argument(
        "--max-time", type=int, default=0, help="seconds per schemathesis run (0 = no limit)"
    )
    p.add_argument("--workers", default="2")
    p.add_argument("--seed", type=int, default=20261122)
    p.add_argument(
        "--report-dir", default=".data/fuzz-report", help="JUnit reports (.data is git-ignored)"
    )
    args = p.parse_args()
    report_dir = Path(args.report_dir).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)

    if args.url:
        runs = [("anonymous", None)] + ([("token", args.token)] if args.token else [])
        return max(
            _schemathesis(args.url.rstrip("/"), tok, args, label, report_dir) for label, tok in runs
        )

    data = Path(tempfile.mkdtemp(prefix="flashmart-fuzz-"))
    base = _base_settings(data)  # made first, so a failed start still stops what did start
    try:
        settings = _private_platform(base)
        roles = [r for r in args.roles.split(",") if r]
        runs = [("anonymous", None)] + list(_tokens(settings, roles).items())
        codes = {
            label: _schemathesis(settings.api_url, tok, args, label, report_dir)
            for label, tok in runs
        }
        print(
            "\n=== fuzz summary: "
            + ", ".join(f"{k}: {'ok' if v == 0 else 'FAILED'}" for k, v in codes.items())
        )
        print(f"JUnit reports in {report_dir}")
        return 0 if all(v == 0 for v in codes.values()) else 1
    finally:
        import ray

        if ray.is_initialized():
            from ray import serve

            try:
                serve.shutdown()
            finally:
                ray.shutdown()
        from flashmart.platform import stop_backing_services

        stop_backing_services(base)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
