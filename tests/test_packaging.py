"""`pip install .` gives one import namespace: `flashmart`, with the card's folders (actors/, serve/,
storage/, sim/) inside it, and nothing else at the top level of site-packages."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=600,
    )
    (built,) = out.glob("flashmart-*.whl")
    return built


def test_the_wheel_holds_one_top_level_package_with_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"flashmart"}
    for expected in (
        "flashmart/actors/inventory/state.py",
        "flashmart/serve/app.py",
        "flashmart/storage/migrations/0001_identity.sql",
        "flashmart/sim/scenarios/smoke.toml",
        "flashmart/actors/fraud/model.json",
        "flashmart/serve/web/templates/shop/base.html",
        "flashmart/serve/web/static/app.js",
    ):
        assert expected in names, expected


def test_installed_in_an_empty_environment_serve_is_not_a_top_level_module(wheel, tmp_path):
    env = tmp_path / "env"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        timeout=600,
    )
    probe = (
        "import importlib.util as u, json; "
        "found = {n: u.find_spec(n) is not None for n in "
        "('flashmart.actors', 'flashmart.serve', 'flashmart.storage', 'flashmart.sim', "
        "'actors', 'serve', 'storage', 'sim')}; print(json.dumps(found))"
    )
    found = subprocess.run(
        [str(python), "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(found) == {
        "flashmart.actors": True,
        "flashmart.serve": True,
        "flashmart.storage": True,
        "flashmart.sim": True,
        "actors": False,
        "serve": False,
        "storage": False,
        "sim": False,
    }
