"""The sale's report: throughput over time, latency percentiles per endpoint, sell-out time, fairness,
refusals by reason, and the invariants. Printed as rich tables, saved as JSON, plotted as PNG."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def latency_table(events) -> dict[str, dict]:
    by: dict[str, list[float]] = defaultdict(list)
    errors: Counter = Counter()
    for _, endpoint, status, latency, _ in events:
        by[endpoint].append(latency)
        if status == 0 or status >= 500:
            errors[endpoint] += 1
    out = {}
    for endpoint, values in sorted(by.items()):
        values.sort()
        out[endpoint] = {
            "count": len(values),
            "errors_5xx_or_transport": errors[endpoint],
            **{f"p{q}_ms": round(percentile(values, q) * 1000, 1) for q in (50, 90, 99)},
            "max_ms": round(values[-1] * 1000, 1),
        }
    return out


def throughput(events, outcomes) -> dict:
    """Per second since the sale opened: requests answered, orders confirmed (201 on checkout)."""
    reqs: Counter = Counter()
    orders: Counter = Counter()
    for t, endpoint, status, latency, _ in events:
        second = int(max(0.0, t + latency))
        reqs[second] += 1
        if endpoint in ("checkout", "inventory.commit") and status in (200, 201, 202):
            orders[second] += 1
    horizon = max(list(reqs) + [0]) + 1
    return {
        "requests_per_s": [reqs[s] for s in range(horizon)],
        "orders_per_s": [orders[s] for s in range(horizon)],
    }


def refusals(events, outcomes) -> dict:
    by_reason = Counter(f"{e[1]}: {e[4] or e[2]}" for e in events if e[2] == 0 or e[2] >= 400)
    results = Counter(o.result for o in outcomes)
    return {
        "responses_by_reason": dict(by_reason.most_common()),
        "buyers_by_outcome": dict(results.most_common()),
    }


def fairness(plans, paid_buyers: dict[str, set[int]], hot) -> dict:
    """Share of the earliest arrivals (as many as the SKU has units) who got a unit. Buyers who would
    never buy (abandoners, cards that always decline) are left out of the early group."""
    out = {}
    for h in hot:
        eager = sorted(
            (p for p in plans if p.sku == h.sku and not p.abandon and p.retry_card),
            key=lambda p: p.arrival_s,
        )
        early = eager[: h.units]
        got = sum(1 for p in early if p.user_id in paid_buyers.get(h.sku, set()))
        out[h.sku] = {
            "early_arrivals": len(early),
            "got_a_unit": got,
            "share": round(got / len(early), 4) if early else None,
            "buyers_with_a_unit": len(paid_buyers.get(h.sku, set())),
        }
    return out


def sell_out(samples: list[dict], outcomes, hot) -> dict:
    out = {}
    for h in hot:
        first_zero = next(
            (s["t"] for s in samples if s["sku"] == h.sku and s["available"] == 0), None
        )
        last_order = max(
            (o.done_s for o in outcomes if o.sku == h.sku and o.result == "bought"), default=None
        )
        out[h.sku] = {"available_reached_0_at_s": _r(first_zero), "last_order_at_s": _r(last_order)}
    return out


def _r(v):
    return None if v is None else round(v, 2)


def build(
    scenario, prepared, plans, result, t0, samples, verdict, paid_buyers, faults_log, extra
) -> dict:
    outcomes, events = result.outcomes, result.events
    end = max([o.done_s for o in outcomes] + [0.0])
    lag = sorted(max(0.0, o.started_s - o.arrival_s) for o in outcomes)
    tp = throughput(events, outcomes)
    return {
        "scenario": scenario.name,
        "run_id": prepared.run_id,
        "driver": extra.get("driver"),
        "description": scenario.description,
        "buyers": len(outcomes),
        "hot_skus": [
            {
                "sku": h.sku,
                "units": h.units,
                "per_buyer_limit": h.per_buyer_limit,
                "warehouses": h.warehouses,
            }
            for h in prepared.hot
        ],
        # when the last buyer of the crowd had their last answer (seconds after the sale opened)
        "sale_duration_s": round(end, 2),
        "requests": len(events),
        # the load generator's own CPU (HTTP driver): did it, or flashmart, saturate the cores?
        "driver_cpu": result.cpu_report() if hasattr(result, "cpu_report") else None,
        "requests_per_s_mean": round(len(events) / end, 1) if end else None,
        "requests_per_s_peak": max(tp["requests_per_s"] or [0]),
        "orders_per_s_peak": max(tp["orders_per_s"] or [0]),
        "orders_confirmed_by_driver": sum(1 for o in outcomes if o.result == "bought"),
        "client_start_lag_ms": {
            "p50": round(percentile(lag, 50) * 1000, 1),
            "p99": round(percentile(lag, 99) * 1000, 1),
        },
        "latency_by_endpoint": latency_table(events),
        "throughput": tp,
        "sell_out": sell_out(samples, outcomes, prepared.hot),
        "fairness": fairness(plans, paid_buyers, prepared.hot),
        "refusals": refusals(events, outcomes),
        "faults": faults_log,
        "invariants": verdict.as_dict(),
        **{k: v for k, v in extra.items() if k != "driver"},
    }


def print_report(report: dict, console) -> None:
    from rich.table import Table

    head = Table(
        title=f"flash sale '{report['scenario']}' (run {report['run_id']}, driver {report['driver']})"
    )
    head.add_column("measure")
    head.add_column("value", justify="right")
    for k in (
        "buyers",
        "every_buyer_answered_s",
        "sale_duration_s",
        "requests",
        "requests_per_s_mean",
        "requests_per_s_peak",
        "orders_per_s_peak",
        "orders_confirmed_by_driver",
    ):
        head.add_row(k, str(report.get(k)))
    cpu = report.get("driver_cpu")
    if cpu and cpu.get("share_of_machine") is not None:
        head.add_row(
            "driver CPU (load generator)",
            f"{cpu['cpu_ms_per_request']} ms/request, {cpu['share_of_machine']:.0%} of the machine",
        )
    machine = report.get("machine")
    if machine:
        la = machine["load_average_1min"]
        head.add_row(
            "load average (1 min) during the sale",
            f"{la['min']} - {la['max']} (mean {la['mean']}) on {machine['cores']} cores",
        )
    head.add_row(
        "client start lag p50/p99 ms",
        f"{report['client_start_lag_ms']['p50']} / {report['client_start_lag_ms']['p99']}",
    )
    for sku, s in report["sell_out"].items():
        head.add_row(
            f"sell-out {sku}",
            f"available 0 at {s['available_reached_0_at_s']} s, last order at {s['last_order_at_s']} s",
        )
    for sku, f in report["fairness"].items():
        head.add_row(
            f"fairness {sku}",
            f"{f['got_a_unit']}/{f['early_arrivals']} early arrivals got a unit ({f['share']})",
        )
    for k, v in report["refusals"]["buyers_by_outcome"].items():
        head.add_row(f"buyers {k}", str(v))
    console.print(head)

    lat = Table(title="latency by endpoint")
    for c in ("endpoint", "count", "5xx/transport", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        lat.add_column(c, justify="right" if c != "endpoint" else "left")
    for ep, v in report["latency_by_endpoint"].items():
        lat.add_row(
            ep,
            str(v["count"]),
            str(v["errors_5xx_or_transport"]),
            str(v["p50_ms"]),
            str(v["p90_ms"]),
            str(v["p99_ms"]),
            str(v["max_ms"]),
        )
    console.print(lat)

    if machine:
        cpu = Table(title="CPU during the sale by kind of process (share of all cores)")
        for c in ("process", "CPU s", "share"):
            cpu.add_column(c, justify="right" if c != "process" else "left")
        for kind, v in machine["cpu_by_process_kind"].items():
            cpu.add_row(kind, str(v["cpu_s"]), f"{v['share_of_machine']:.0%}")
        console.print(cpu)

    ref = Table(title="refused / failed responses by reason")
    ref.add_column("endpoint: reason")
    ref.add_column("count", justify="right")
    for k, v in list(report["refusals"]["responses_by_reason"].items())[:20]:
        ref.add_row(k, str(v))
    console.print(ref)

    if report["faults"]:
        ft = Table(title="faults injected")
        for c in ("at s", "kind", "what happened"):
            ft.add_column(c)
        for f in report["faults"]:
            ft.add_row(str(f.get("at_s")), f["kind"], f.get("detail", ""))
        console.print(ft)

    inv = Table(title="invariants (from PostgreSQL and the payment gateway)")
    for c in ("invariant", "holds", "detail"):
        inv.add_column(c)
    for c in report["invariants"]["checks"]:
        mark = (
            "[green]yes[/]"
            if c["ok"]
            else ("[dim]n/a[/]" if c["ok"] is None else "[bold red]NO[/]")
        )
        inv.add_row(c["name"], mark, c["detail"][:200])
    console.print(inv)


def save(report: dict, samples: list[dict], events, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "report.md").write_text(markdown(report))
    return [out_dir / "report.json", out_dir / "report.md", *plot(report, samples, events, out_dir)]


def _seconds(v) -> str:
    return "never" if v is None else f"{v} s"


def markdown(report: dict) -> str:
    """The report as a page (written next to report.json, so a page in docs/ is the run's own words)."""
    lines = [
        f"# {report['scenario']}: run {report['run_id']} (driver {report['driver']})",
        "",
        f"{report['description']}.",
        "",
        "Generated by the run itself (`sim/report.py`); the figures below are this run's.",
        "",
        f"- Command: `{report.get('command', '?')}`",
        f"- Code: {report.get('code', '?')}; started {report.get('started_at', '?')}",
    ]
    platform = report.get("platform")
    if platform:
        lines.append(
            "- Platform: "
            + ", ".join(f"{k} = {v}" for k, v in platform.items())
            + " (the settings "
            "the platform ran with)"
        )
    machine = report.get("machine")
    if machine:
        la = machine["load_average_1min"]
        lines.append(
            f"- Machine: {machine['cores']} cores; load average (1 min) during the sale "
            f"{la['min']} to {la['max']}, mean {la['mean']} (at the start {la['at_start']}, at the "
            f"end {la['at_end']}); other work on the machine shows in the CPU table below"
        )
    lag = report["client_start_lag_ms"]
    lines += [
        "",
        "## The sale",
        "",
        f"- Buyers: {report['buyers']:,}; every buyer had every answer "
        f"**{report.get('every_buyer_answered_s', report['sale_duration_s'])} s** after the sale "
        "opened (before any last-call wave).",
        f"- Requests: {report['requests']:,}, {report['requests_per_s_mean']}/s mean, "
        f"{report['requests_per_s_peak']}/s peak; orders confirmed {report['orders_per_s_peak']}/s peak.",
        f"- Buyers started late by the load generator's concurrency bound: p50 {lag['p50']} ms, "
        f"p99 {lag['p99']} ms.",
    ]
    cpu = report.get("driver_cpu")
    if cpu:
        lines.append(
            f"- Load generator's own CPU: {cpu['cpu_s']} s for {cpu['requests']:,} requests, "
            f"{cpu['cpu_ms_per_request']} ms per request, {cpu['share_of_machine']:.0%} of the machine "
            f"({report.get('processes')} processes x {report.get('concurrency_max')} buyers in flight)."
        )
    for sku, so in report["sell_out"].items():
        lines.append(
            f"- {sku}: available reached 0 at {_seconds(so['available_reached_0_at_s'])}; last order "
            f"at {_seconds(so['last_order_at_s'])}."
        )
    for sku, f in report["fairness"].items():
        lines.append(
            f"- Fairness {sku}: {f['got_a_unit']} of the first {f['early_arrivals']} eager arrivals got "
            f"a unit ({f['share']}); {f['buyers_with_a_unit']} buyers have one."
        )
    waves = report.get("last_call_waves") or []
    if waves:
        lines.append(
            "- Last call after the crowd (units came back from declined or expired holds): "
            + "; ".join(f"{w['buyers']} buyers sent back, {w['bought']} bought" for w in waves)
            + "."
        )
    lines.append(
        "- Buyers by outcome: "
        + ", ".join(f"{k} {v:,}" for k, v in report["refusals"]["buyers_by_outcome"].items())
        + "."
    )
    lines += [
        "",
        "## Latency by endpoint (ms)",
        "",
        "| endpoint | count | 5xx/transport | p50 | p90 | p99 | max |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for ep, v in report["latency_by_endpoint"].items():
        lines.append(
            f"| {ep} | {v['count']:,} | {v['errors_5xx_or_transport']} | {v['p50_ms']} | "
            f"{v['p90_ms']} | {v['p99_ms']} | {v['max_ms']} |"
        )
    if machine:
        lines += [
            "",
            "## CPU during the sale by kind of process",
            "",
            f"Over {machine['wall_s']} s of the sale; a share is of all {machine['cores']} cores, "
            f"which were busy {machine.get('busy_share', 0):.0%} of the time. Other work is the "
            "machine's busy time less the platform's and the simulator's processes.",
            "",
            "| process | CPU s | share of the machine |",
            "| --- | ---: | ---: |",
        ]
        for kind, v in machine["cpu_by_process_kind"].items():
            lines.append(f"| {kind} | {v['cpu_s']} | {v['share_of_machine']:.0%} |")
        if machine.get("actors_cpu_s"):
            by_actor = ", ".join(f"{a} {s} s" for a, s in machine["actors_cpu_s"].items())
            lines += ["", f"Actors by class (CPU s): {by_actor}."]
    lines += [
        "",
        "## Refused or failed responses",
        "",
        "| endpoint: reason | count |",
        "| --- | ---: |",
    ]
    for k, v in list(report["refusals"]["responses_by_reason"].items())[:20]:
        lines.append(f"| {k} | {v:,} |")
    if report.get("faults"):
        lines += ["", "## Faults", "", "| at s | fault | what happened |", "| --- | --- | --- |"]
        for f in report["faults"]:
            lines.append(f"| {f.get('at_s')} | {f['kind']} | {f.get('detail', '')} |")
    inv = report["invariants"]
    lines += [
        "",
        f"## Invariants (from PostgreSQL and the payment gateway): {'all hold' if inv['ok'] else 'FAILED'}",
        "",
        "| invariant | holds | detail |",
        "| --- | --- | --- |",
    ]
    for c in inv["checks"]:
        mark = "yes" if c["ok"] else ("n/a" if c["ok"] is None else "**NO**")
        lines.append(f"| {c['name']} | {mark} | {c['detail'][:200].replace('|', '/')} |")
    lines += [
        "",
        "![throughput and stock](throughput_stock.png)",
        "",
        "![latency CDF](latency_cdf.png)",
        "",
    ]
    return "\n".join(lines)


def plot(report: dict, samples: list[dict], events, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    tp = report["throughput"]
    xs = list(range(len(tp["orders_per_s"])))
    ax1.bar(
        xs,
        tp["orders_per_s"],
        width=1.0,
        align="edge",
        color="tab:green",
        label="orders confirmed/s",
    )
    ax1b = ax1.twinx()
    ax1b.plot(
        [x + 0.5 for x in xs],
        tp["requests_per_s"],
        color="tab:blue",
        lw=1,
        label="requests answered/s",
    )
    ax1.set_ylabel("orders/s")
    ax1b.set_ylabel("requests/s")
    ax1.set_title(f"{report['scenario']}: throughput and stock over time (run {report['run_id']})")
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax1b.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    for f in report.get("faults") or []:
        for ax in (ax1, ax2):
            ax.axvline(f.get("at_s", 0), color="tab:red", ls=":", lw=1)
        ax1.text(
            f.get("at_s", 0),
            ax1.get_ylim()[1] * 0.9,
            f["kind"],
            rotation=90,
            fontsize=7,
            color="tab:red",
            va="top",
        )
    for sku in sorted({s["sku"] for s in samples}):
        pts = [s for s in samples if s["sku"] == sku]
        ax2.plot([p["t"] for p in pts], [p["available"] for p in pts], label=f"{sku} available")
        ax2.plot([p["t"] for p in pts], [p["sold"] for p in pts], ls="--", label=f"{sku} sold")
    ax2.set_xlabel("seconds since the sale opened")
    ax2.set_ylabel("units (PostgreSQL ledger)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    p = out_dir / "throughput_stock.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    fig, ax = plt.subplots(figsize=(8, 5))
    by: dict[str, list[float]] = defaultdict(list)
    for _, endpoint, _status, latency, _ in events:
        by[endpoint].append(latency * 1000)
    for endpoint, values in sorted(by.items()):
        values.sort()
        n = len(values)
        ax.plot(values, [(i + 1) / n for i in range(n)], label=f"{endpoint} (n={n})")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("share of requests at or below")
    ax.set_title(f"{report['scenario']}: latency CDF per endpoint")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out_dir / "latency_cdf.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths
