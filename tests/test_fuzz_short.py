"""The fuzzer's short form in the test suite (so in CI): schemathesis over the whole OpenAPI document
on a private platform, anonymously and as each of customer, seller and admin, a bounded time per
identity; no 5xx and every documented response matching its schema. `make fuzz` is the long form."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECONDS_PER_IDENTITY = 45


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_short_fuzz_finds_no_server_error_for_any_role(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "fuzz.py"),
            "--roles",
            "customer,seller,admin",
            "--max-examples",
            "5",
            "--max-time",
            str(SECONDS_PER_IDENTITY),
            "--workers",
            "1",
            "--report-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=840,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    summary = [line for line in out.splitlines() if line.startswith("=== fuzz summary")]
    assert summary and all(
        f"{who}: ok" in summary[-1] for who in ("anonymous", "customer", "seller", "admin")
    ), out[-3000:]
    assert len(list(tmp_path.glob("fuzz-*.xml"))) == 4  # one report per identity
