"""The alert rules and the dashboard in ops/ load, and every expression names a metric the platform
really exports: flashmart's own (declared in the code through flashmart.obs, exported by Ray's
metrics agent as ray_flashmart_*) or Ray Serve's (found in the installed Ray's source)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "ops" / "prometheus" / "flashmart-alerts.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "flashmart-sale.json"
METRIC = re.compile(r"\bray_[a-zA-Z0-9_]+")
REQUIRED_ALERTS = {
    "InventoryFlushFailing",
    "NotificationsDeadLettered",
    "AuthorisationsLeftOpen",
    "SoldOutBoardLagging",
    "Http5xxRateHigh",
}


KIND_SERIES = {
    "counter": ("", "_total"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            fn = (
                node.func.attr
                if isinstance(node.func, ast.Attribute)
                else getattr(node.func, "id", "")
            )
            if fn in KIND_SERIES:
                yield fn, node.args[0]


def declared_flashmart_metrics() -> set[str]:
    """Names passed to obs.counter/gauge/histogram in the product code, with the series Ray exports
    for each kind: a literal name, or (a name from a variable) the string values of the dicts in the
    same function (the shard names its event counters in a dict)."""
    from flashmart.ops_metrics import OPS_GAUGES

    names = {(n, "gauge") for n in OPS_GAUGES}
    for folder in ("actors", "serve", "storage", "flashmart"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for fn, first in _calls(tree):
                if isinstance(first, ast.Constant):
                    names.add((first.value, fn))
            for func in ast.walk(tree):
                if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for fn, first in _calls(func):
                    if isinstance(first, ast.Name):
                        names |= {
                            (v.value, fn)
                            for d in ast.walk(func)
                            if isinstance(d, ast.Dict)
                            for v in d.values
                            if isinstance(v, ast.Constant) and isinstance(v.value, str)
                        }
    return {f"ray_flashmart_{n}{suffix}" for n, kind in names for suffix in KIND_SERIES[kind]}


def ray_serve_metrics() -> set[str]:
    import ray.serve

    out = set()
    literal = re.compile(r"""["'](serve_[a-z_{}]+)["']""")
    for path in Path(ray.serve.__file__).parent.rglob("*.py"):
        for name in literal.findall(path.read_text(errors="replace")):
            for protocol in ("http", "grpc"):
                n = "ray_" + name.replace("{protocol_name}", protocol)
                if "{" not in n:
                    out |= {n, n + "_total", n + "_bucket", n + "_sum", n + "_count"}
    return out


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return declared_flashmart_metrics() | ray_serve_metrics()


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_the_alert_rules_load_and_cover_the_sale(exported):
    loaded = rules()
    assert {r["alert"] for r in loaded} >= REQUIRED_ALERTS
    for r in loaded:
        assert r["expr"].strip() and r["labels"]["severity"] and r["annotations"]["summary"]


def test_every_expression_names_exported_metrics(exported):
    exprs = [r["expr"] for r in rules()]
    dash = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    for expr in exprs:
        names = set(METRIC.findall(expr))
        assert names, f"no metric in {expr!r}"
        assert names <= exported, f"{expr!r} names {sorted(names - exported)}: not exported"


def test_the_check_refuses_an_unknown_metric(exported):
    assert "ray_flashmart_no_such_thing" not in exported
    assert "ray_flashmart_checkouts_total" in exported
    assert "ray_serve_num_http_error_requests_total" in exported


def test_the_dashboard_is_grafana_json():
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert dash["uid"] and len(ids) == len(set(ids)) >= 6
    assert all(p["targets"] and p["gridPos"] for p in dash["panels"])
