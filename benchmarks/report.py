"""Turn benchmarks/results/latest.json into terminal tables, docs/benchmarks.md and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
IMG = REPO / "docs" / "img"
BASELINE = REPO / "benchmarks" / "baseline.json"

STRATEGY_TEXT = {
    "engine": "flashmart inventory engine: hot-SKU shard actor, batched calls, durable group commit",
    "pg_rowlock": "PostgreSQL row lock: `UPDATE ... WHERE qty >= 1` + hold row, one transaction",
    "redis_lock": "Redis SET NX lock around a PostgreSQL read/update + hold row",
    "redis_decrby": "Redis DECRBY, INCRBY back if negative, record the hold",
    "redis_lua": "solution 3 in one step: a Lua script checks, decrements and records the hold",
}


def _fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "–"


# --- rows shared by the terminal and the markdown --------------------------------------------------

ORDER = ["engine", "pg_rowlock", "redis_lock", "redis_decrby", "redis_lua"]


def sorted_reservations(results: dict) -> list[dict]:
    rows = results.get("reservations", {}).get("rows", [])
    order = lambda r: ORDER.index(r["strategy"]) if r["strategy"] in ORDER else len(ORDER)  # noqa: E731
    return sorted(rows, key=lambda r: (r.get("concurrency") or 0, order(r)))


def reservation_rows(results: dict) -> list[list[str]]:
    rows = sorted_reservations(results)
    pg = {
        r.get("concurrency"): r.get("reservations_per_s")
        for r in rows
        if r["strategy"] == "pg_rowlock"
    }
    return [
        [
            _fmt(r.get("concurrency")),
            r["strategy"],
            _fmt(r.get("reservations_per_s"), 0),
            _ratio(r.get("reservations_per_s"), pg.get(r.get("concurrency"))),
            _fmt(r.get("p50_ms"), 2),
            _fmt(r.get("p99_ms"), 2),
            _fmt(r.get("oversold")),
            _fmt(r.get("conserved")),
            _fmt(r.get("requests")),
        ]
        for r in rows
    ]


RES_HEAD = [
    "callers",
    "strategy",
    "reservations/s",
    "vs PG row lock",
    "p50 ms",
    "p99 ms",
    "oversold",
    "conserved",
    "requests",
]
HTTP_HEAD = [
    "target",
    "requests/s",
    "vs uvicorn hello",
    "p50 ms",
    "p99 ms",
    "non-2xx",
    "socket errors",
    "requests/s of each pass",
]


def http_rows(results: dict) -> list[list[str]]:
    rows = results.get("http", {}).get("rows", [])
    ceiling = next((r["requests_per_s"] for r in rows if r["name"] == "uvicorn_hello"), None)
    return [
        [
            r["name"],
            _fmt(r["requests_per_s"], 0),
            _ratio(r["requests_per_s"], ceiling),
            _fmt(r["p50_ms"], 2),
            _fmt(r["p99_ms"], 2),
            _fmt(r["non_2xx"]),
            _fmt(r["socket_errors"]),
            ", ".join(_fmt(x, 0) for x in r.get("rounds_requests_per_s", [])),
        ]
        for r in rows
    ]


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flatten(v, key + ".")
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):
                out += _flatten(x, f"{key}[{i}].")
        else:
            out.append((key, v))
    return out


def generic_rows(section: dict) -> list[list[str]]:
    """A section whose shape this module does not know (search, checkout): every scalar figure."""
    return [[k, _fmt(v, 3) if isinstance(v, float) else _fmt(v)] for k, v in _flatten(section)]


def ratio_rows(results: dict) -> list[list[str]]:
    baseline = json.loads(BASELINE.read_text()).get("ratios", {}) if BASELINE.exists() else {}
    names = list(dict.fromkeys([*results.get("ratios", {}), *baseline]))
    return [[n, _fmt(results.get("ratios", {}).get(n), 3), _fmt(baseline.get(n), 3)] for n in names]


# --- terminal -------------------------------------------------------------------------------------


def print_tables(results: dict, console) -> None:
    from rich.columns import Columns
    from rich.markup import escape
    from rich.table import Table

    def table(title, head, rows):
        t = Table(title=title, title_style="bold")
        for h in head:
            t.add_column(
                h, justify="left" if h in ("strategy", "target", "ratio", "figure") else "right"
            )
        for r in rows:
            t.add_row(*r)
        return t

    left = table(
        "One hot SKU: reservations", RES_HEAD[:7], [r[:7] for r in reservation_rows(results)]
    )
    right = table("HTTP (wrk)", HTTP_HEAD[:5], [r[:5] for r in http_rows(results)])
    console.print(Columns([left, right]))
    extra = [
        table("ratios (this run vs baseline)", ["ratio", "now", "baseline"], ratio_rows(results))
    ]
    for name in ("scaling", "search", "checkout"):
        section = results.get(name, {})
        if section and "skipped" not in section and name != "scaling":
            extra.append(table(name, ["figure", "value"], generic_rows(section)[:30]))
    console.print(Columns(extra))
    for name in ("engine", "scaling", "search", "checkout", "http"):
        section = results.get(name, {})
        if isinstance(section, dict) and "skipped" in section:
            console.print(f"[yellow]{name} skipped:[/yellow] {escape(str(section['skipped']))}")


# --- plots ----------------------------------------------------------------------------------------


def plot(results: dict) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMG.mkdir(parents=True, exist_ok=True)
    made = {}
    rows = sorted_reservations(results)
    if rows:
        levels = sorted({r.get("concurrency") for r in rows})
        names = [n for n in ORDER if any(r["strategy"] == n for r in rows)]
        names += sorted({r["strategy"] for r in rows} - set(names))
        fig, ax = plt.subplots(figsize=(8, 4))
        width = 0.8 / len(levels)
        for i, level in enumerate(levels):
            by = {r["strategy"]: r for r in rows if r.get("concurrency") == level}
            xs = [j + (i - (len(levels) - 1) / 2) * width for j in range(len(names))]
            values = [(by.get(n) or {}).get("reservations_per_s") or 0 for n in names]
            bars = ax.bar(xs, values, width, label=f"{level} callers")
            for b, v in zip(bars, values):
                if v:
                    ax.annotate(
                        f"{v:,.0f}",
                        (b.get_x() + b.get_width() / 2, v),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
        ax.set_xticks(range(len(names)), names)
        ax.set_yscale("log")
        ax.set_ylabel("reservations/s (log)")
        ax.set_title("One hot SKU, same harness, same run")
        ax.legend(fontsize=8)
        ax.margins(y=0.2)
        fig.tight_layout()
        fig.savefig(IMG / "bench_reservations.png", dpi=110)
        plt.close(fig)
        made["reservations"] = "img/bench_reservations.png"
    hrows = results.get("http", {}).get("rows", [])
    if hrows:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        names = [r["name"].replace("_", "\n", 1) for r in hrows]
        values = [r["requests_per_s"] for r in hrows]
        bars = ax.bar(
            names,
            values,
            color=["#678" if r["name"].startswith("uvicorn") else "#27a" for r in hrows],
        )
        ax.set_ylabel("requests/s")
        ax.set_title("HTTP through Ray Serve vs uvicorn (wrk)")
        for b, v, r in zip(bars, values, hrows):
            ax.annotate(
                f"{v:,.0f}/s\np99 {r['p99_ms']:.1f} ms",
                (b.get_x() + b.get_width() / 2, v),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.tick_params(axis="x", labelsize=8)
        ax.margins(y=0.25)
        fig.tight_layout()
        fig.savefig(IMG / "bench_http.png", dpi=110)
        plt.close(fig)
        made["http"] = "img/bench_http.png"
    grid = results.get("scaling", {}).get("grid", [])
    if grid:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        for series in sorted({(g.get("nodes", 1), g.get("shards", 1)) for g in grid}):
            pts = sorted(
                (g["callers"], g.get("reservations_per_s") or 0)
                for g in grid
                if (g.get("nodes", 1), g.get("shards", 1)) == series
            )
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="o",
                label=f"{series[0]} node(s), {series[1]} shard(s)",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent callers")
        ax.set_ylabel("reservations/s")
        ax.set_title("Inventory engine scaling")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(IMG / "bench_scaling.png", dpi=110)
        plt.close(fig)
        made["scaling"] = "img/bench_scaling.png"
    return made


# --- markdown -------------------------------------------------------------------------------------


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _skipped(section) -> str | None:
    return section.get("skipped") if isinstance(section, dict) else None


def _http_findings(rows: list[dict]) -> list[str]:
    """Sentences computed from this run's rows: where the requests/s go between the ceiling and Serve."""
    rps = {r["name"]: r["requests_per_s"] for r in rows}
    hello, mw = rps.get("uvicorn_hello"), rps.get("uvicorn_hello_http_middleware")
    app, serve = rps.get("uvicorn_flashmart_healthz"), rps.get("serve_healthz")
    out = []
    if hello and mw:
        out.append(
            f'- one pass-through `@app.middleware("http")` (Starlette\'s BaseHTTPMiddleware) takes the hello '
            f"world from {hello:,.0f} to {mw:,.0f} requests/s ({mw / hello:.0%}); flashmart's app declares its "
            "request-id middleware that way, a pure ASGI middleware would not pay this"
        )
    if hello and app:
        out.append(
            f"- flashmart's app without Serve: {app / hello:.0%} of the ceiling (its middleware stack and "
            "handlers)"
        )
    if app and serve:
        out.append(
            f"- Serve's own share: the same app through Serve answers {serve / app:.0%} of what it answers on "
            "plain uvicorn"
        )
    out += _flash_sale_findings(rps)
    return out


def _flash_sale_findings(rps: dict) -> list[str]:
    """The flash sale over HTTP against Serve's own ceiling (/healthz) and the seckill app."""
    serve, out = rps.get("serve_healthz"), []
    for row, what in (
        ("serve_add_sold_out", "sold-out add-to-cart (answered by the replica's board)"),
        ("serve_add_to_cart", "reserving add-to-cart (a hold in the hot SKU's shard per request)"),
        ("serve_product_page", "product page (page cache + stock feed, no engine call)"),
    ):
        if serve and rps.get(row):
            out.append(
                f"- {what}: {rps[row]:,.0f} requests/s, {rps[row] / serve:.2f}x Serve /healthz"
            )
    add, seckill = rps.get("serve_add_to_cart"), rps.get("seckill_flash_sale")
    if add and seckill:
        out.append(
            f"- flashmart's flash-sale add-to-cart answers {add / seckill:.2f}x the requests/s of the "
            "reference seckill app (`benchmarks/seckill.py`: FastAPI on uvicorn with as many workers as "
            "flashmart has replicas, a Redis Lua check-and-decrement gate, a PostgreSQL INSERT per order) "
            "in the same run. Durable where: the seckill app's gate is Redis (append-only file, fsync every "
            "second: a crash loses up to a second of decrements, and a crash between Redis and PostgreSQL "
            "leaves a unit taken without an order row); its order row is committed before the answer. "
            "flashmart's hold is decided in the SKU's shard and group-committed to PostgreSQL a few ms "
            "later (a hold lost in a crash only returns its units), and the order with its holds is "
            "durable before checkout answers"
        )
    return out


def _busy_warning(m: dict) -> list[str]:
    """Other work on the machine shows in the load average before the run starts; say so when it
    exceeds the cores. (The load at the end is the run's own platform and load generators as much as
    anyone else's, so it is shown, not judged.)"""
    start = (m.get("load_avg_at_start") or [])[:1]
    end = (m.get("load_avg_at_end") or [])[:1]
    cores = m.get("cores") or 1
    if start and start[0] > cores:
        return [
            f"**The machine was busy when this run started** (1-minute load average {start[0]} on "
            f"{cores} cores, from other work; {end[0] if end else '?'} at the end, this run's own "
            "processes included): absolute figures are lower than on an idle machine; the ratios "
            "between rows of one table are what this report is for.",
            "",
        ]
    return []


def checkout_section(c: dict) -> list[str]:
    """Checkout (benchmarks/checkout.py run_checkout): (a) against localstripe's CPU-bound ceiling on the
    same cores, (b) through localstripe paced like Stripe, each with flashmart's CPU per checkout."""
    out = ["## Checkout: flashmart checkouts/s vs the payment gateway's own rate", ""]
    if _skipped(c):
        return out + [f"Not measured: {_skipped(c)}.", ""]
    if not c:
        return out
    out += [
        "Every buyer has one item in a cart; `POST /api/v1/orders/checkout` runs the whole saga (holds, "
        "fraud, authorise, order + commit + outbox, capture). The gateway's ceiling is create+confirm then "
        "capture straight through the Stripe SDK, measured before and after flashmart's run (mean).",
        "",
    ]
    rows = [
        [
            "(a) localstripe on the same cores, CPU-bound",
            _fmt(c.get("gateway_checkout_ceiling_per_s")),
            _fmt(c.get("checkouts_per_s")),
            _fmt(c.get("checkout_p99_ms"), 0),
            _fmt(c.get("ratio_to_ceiling"), 2),
            _fmt(c.get("flashmart_cpu_ms_per_checkout")),
        ]
    ]
    p = c.get("paced") or {}
    if p:
        rows.append(
            [
                f"(b) localstripe paced like Stripe ({_fmt(p.get('global_per_s'), 0)} req/s overall, "
                f"{_fmt(p.get('endpoint_per_s'), 0)} per endpoint, 429 beyond)",
                _fmt(p.get("gateway_checkout_ceiling_per_s")),
                _fmt(p.get("checkouts_per_s")),
                _fmt(p.get("checkout_p99_ms"), 0),
                _fmt(p.get("ratio_to_ceiling"), 2),
                _fmt(p.get("flashmart_cpu_ms_per_checkout")),
            ]
        )
    out += [
        _md_table(
            [
                "gateway",
                "gateway ceiling checkouts/s",
                "flashmart checkouts/s",
                "flashmart p99 ms",
                "ratio (goal >= 0.9)",
                "flashmart CPU ms per checkout",
            ],
            rows,
        ),
        "",
    ]
    out += [
        "(a) measures CPU: localstripe needs a few ms per checkout on the cores flashmart runs on, so the "
        "ratio is flashmart's CPU per checkout against the emulator's. (b) is the figure for a real, remote "
        "gateway: flashmart's payment pacing set to the gateway's limits, answers 429 counted "
        f"({_fmt(p.get('gateway_429s_to_flashmart'))} to flashmart in this run)."
        if p
        else "(a) measures CPU: flashmart's CPU per checkout against the emulator's on the same cores.",
        "",
    ]
    return out


# flashmart's processes in a checkout run, by what they do for a checkout (benchmarks/checkout.py roles)
CHECKOUT_PATH = (
    "serve replica",
    "serve proxy",
    "haproxy",
    "checkout actor",
    "payment actors",
    "cart actors",
    "inventory shards",
    "postgres",
    "redis",
)
AFTER_THE_ANSWER = ("outbox/notify", "ray::BackofficeActor")  # order mail, invoices, events
NOT_FLASHMART = ("localstripe", "load generator", "py-spy")


def _checkout_cpu_split(per_role: dict) -> list[float]:
    path = sum(v for k, v in per_role.items() if k in CHECKOUT_PATH)
    after = sum(v for k, v in per_role.items() if k in AFTER_THE_ANSWER)
    rest = sum(
        v for k, v in per_role.items() if k not in CHECKOUT_PATH + AFTER_THE_ANSWER + NOT_FLASHMART
    )
    return [round(path, 2), round(after, 2), round(rest, 2), round(path + after + rest, 2)]


def standalone_checkout_cpu_section() -> list[str]:
    """benchmarks/results/checkout_cpu.json: CPU per checkout by process, before and after a change of
    the checkout path, each measured by benchmarks/checkout.py --cpu."""
    path = REPO / "benchmarks" / "results" / "checkout_cpu.json"
    if not path.exists():
        return []
    r = json.loads(path.read_text())
    runs = [(name, r[name]) for name in ("before", "after") if name in r]
    roles = sorted(
        {k for _, run in runs for k in run["cpu_ms_per_flashmart_checkout"]},
        key=lambda k: -max(run["cpu_ms_per_flashmart_checkout"].get(k, 0) for _, run in runs),
    )
    rows = [
        [k] + [_fmt(run["cpu_ms_per_flashmart_checkout"].get(k, 0), 2) for _, run in runs]
        for k in roles
    ]
    split = [_checkout_cpu_split(run["cpu_ms_per_flashmart_checkout"]) for _, run in runs]
    labels = (
        "request path (Serve, checkout/payment/cart actors, inventory shards, PostgreSQL, Redis)",
        "after the answer (order events, mail and invoices)",
        "the platform's background (Ray daemons, Serve controller, search, recommendations, sweeper)",
        "flashmart total (without localstripe and the load generator)",
    )
    rows += [[f"**{label}**"] + [_fmt(s[i], 2) for s in split] for i, label in enumerate(labels)]
    rows += [
        ["checkouts/s (p50 ms), 1-minute load average"]
        + [
            f"{_fmt(run['checkouts_per_s'])} ({_fmt(run['checkout_p50_ms'], 0)}), load {run['load_avg_1m']}"
            for _, run in runs
        ]
    ]
    out = [
        "## Checkout: CPU per checkout by process, before and after (standalone runs)",
        "",
        f"- command: `{r['command']}`, on {r.get('cores')} cores",
        f"- {r['note']}",
    ]
    out += [f"- {name}: {run['code']} ({run['generated_at']})" for name, run in runs]
    out += [
        f"- recorded in `benchmarks/results/{path.name}`",
        "",
        _md_table(["process", *[f"{name}, CPU ms per checkout" for name, _ in runs]], rows),
        "",
    ]
    return out + [f"- {line}" for line in r.get("findings", [])] + [""]


def standalone_cold_pages_section() -> list[str]:
    """benchmarks/results/http_cold_pages.json: cold product pages (every page read from PostgreSQL),
    before and after a change of the page's path, each measured by benchmarks/http_cold_pages.py
    (after_again: the same code measured again, for the spread between runs)."""
    path = REPO / "benchmarks" / "results" / "http_cold_pages.json"
    if not path.exists():
        return []
    r = json.loads(path.read_text())
    runs = [name for name in ("before", "after", "after_again") if name in r]

    def cpu(row: dict, *kinds: str) -> float:
        per = row["cpu_ms_per_page"]
        return sum(v for k, v in per.items() if not kinds or any(k.startswith(x) for x in kinds))

    rows = [
        [
            f"{name.replace('_', ' ')}, pass {row['pass'] + 1}",
            _fmt(row["requests_per_s"], 0),
            _fmt(row["p50_ms"], 1),
            _fmt(row["p99_ms"], 1),
            _fmt(row["non_2xx"]),
            _fmt(cpu(row, "serve replica"), 2),
            _fmt(cpu(row, "ray::RecommendationActor"), 2),
            _fmt(cpu(row, "postgres"), 2),
            _fmt(cpu(row) - cpu(row, "py-spy"), 2),
            _fmt(row["load_avg_1m"]),
        ]
        for name in runs
        for row in r[name]["rows"]
    ]
    head = ["run", "pages/s", "p50 ms", "p99 ms", "non-2xx", "replica CPU ms/page"]
    head += ["recommendation actor", "PostgreSQL", "every process accounted", "load (1 min)"]
    out = [
        "## Cold product pages: every page read from PostgreSQL (standalone runs)",
        "",
        f"- command: `{r['command']}`, on 2 cores",
        *(
            f"- {name.replace('_', ' ')}: {r[name]['code']} ({r[name]['generated_at']})"
            for name in runs
        ),
        f"- recorded in `benchmarks/results/{path.name}`; CPU in ms per page",
        "",
        _md_table(head, rows),
        "",
    ]
    return out + [f"- {line}" for line in r.get("findings", [])] + [""]


def standalone_serve_sections() -> list[str]:
    """benchmarks/results/serve_profile.json (python -m benchmarks.serve_profile): where a /healthz
    request's CPU goes through Serve; benchmarks/results/http_checkout.json: the serve_checkout wrk row
    measured on its own (benchmarks/http.py checkout_preparer)."""
    out = []
    path = REPO / "benchmarks" / "results" / "serve_profile.json"
    if path.exists():
        r = json.loads(path.read_text())
        per = r["cpu_ms_per_request"]
        total = sum(per.values())
        out += [
            "## Serve's own cost per request: a /healthz profile (standalone run)",
            "",
            f"- command: `{r.get('command', 'python -m benchmarks.serve_profile')}` "
            f"({r.get('generated_at', '')}), ingress {r.get('ingress')}, one replica",
            f"- wrk {r['connections']} connections for {r['seconds']} s: {_fmt(r['requests_per_s'], 0)} "
            f"requests/s, p99 {_fmt(r['p99_ms'], 1)} ms, {r['non_2xx']} non-2xx; 1-minute load average "
            f"{r['load_avg_1m']} on 2 cores{r.get('load_note', '')}",
            f"- recorded in `benchmarks/results/{path.name}`",
            "",
            _md_table(
                ["process", "CPU ms per /healthz request", "share"],
                [[k, _fmt(v, 3), f"{v / total:.0%}"] for k, v in per.items()]
                + [["all processes of the run", _fmt(total, 3), "100%"]],
            ),
            "",
            f"Inside the replica, by the innermost Python frame of {_fmt(r['replica_samples'])} "
            "py-spy samples (self time):",
            "",
            _md_table(
                ["layer", "share of the replica's on-CPU samples"],
                [[k, f"{v:.0%}"] for k, v in r["replica_self_time_by_layer"].items()],
            ),
            "",
        ]
        out += [f"- {line}" for line in r.get("findings", [])] + [""]
    path = REPO / "benchmarks" / "results" / "http_checkout.json"
    if path.exists():
        r = json.loads(path.read_text())
        out += [
            "## HTTP checkout row (standalone run)",
            "",
            f"- command: `{r.get('command')}` ({r.get('generated_at', '')}); {r.get('note')}",
            f"- 1-minute load average {r.get('load_avg_1m')} on 2 cores{r.get('load_note', '')}",
            "",
            _md_table(
                HTTP_HEAD[:7],
                [
                    [
                        r["name"],
                        _fmt(r["requests_per_s"], 1),
                        "",
                        _fmt(r["p50_ms"], 1),
                        _fmt(r["p99_ms"], 1),
                        _fmt(r["non_2xx"]),
                        _fmt(r["socket_errors"]),
                    ]
                ],
            ),
            "",
        ]
    return out


def standalone_search_sections() -> list[str]:
    """One section per benchmarks/results/search_<N>.json (`python -m benchmarks.search --products N`,
    run on its own because a million products take minutes): headline figures, then every figure."""
    out = []
    for path in sorted(
        (REPO / "benchmarks" / "results").glob("search_*.json"),
        key=lambda p: int(p.stem.split("_")[1]) if p.stem.split("_")[1].isdigit() else 0,
    ):
        r = json.loads(path.read_text())
        actor, http = r.get("actor", {}), r.get("http", {})
        head = [
            [
                "index build (PostgreSQL -> new generation)",
                f"{_fmt(r['index_build']['documents'])} docs in {r['index_build']['seconds']} s = "
                f"{_fmt(r['index_build']['docs_per_s'])} docs/s",
            ]
        ]
        for label, d in (
            ("Tantivy inside the actor, facets", actor.get("inside_actor")),
            (
                "Tantivy inside the actor, no facets (like for like with PG)",
                actor.get("inside_actor_no_facets"),
            ),
            ("PostgreSQL FTS (GIN), top 20 + count", r.get("pg_fts")),
            ("HTTP search, hot queries (page cache)", http.get("hot")),
            ("HTTP search, uncached", http.get("uncached")),
            ("HTTP /healthz, same ingress", http.get("healthz")),
        ):
            if d and "p50_ms" in d:
                rate = d.get("requests_per_s") or d.get("queries_per_s")
                head.append(
                    [
                        label,
                        f"p50 {_fmt(d['p50_ms'], 3)} ms, p99 {_fmt(d['p99_ms'], 3)} ms, {_fmt(rate, 0)}/s",
                    ]
                )
        head.append(
            [
                "Tantivy vs PostgreSQL FTS",
                f"{r.get('tantivy_vs_pg_fts')}x at p50, {r.get('tantivy_vs_pg_fts_p99')}x at p99",
            ]
        )
        head.append(
            ["goals", ", ".join(f"{k}: {_fmt(v)}" for k, v in (r.get("goals") or {}).items())]
        )
        rest = {k: v for k, v in r.items() if k not in ("command", "generated_at")}
        out += [
            f"## Search at {r['catalog']['products']:,} products (standalone run)",
            "",
            f"- command: `{r.get('command')}` ({r.get('generated_at')}, {r.get('seconds', 0):.0f} s)",
            f"- 1-minute load average before {(r.get('load_avg_before') or ['–'])[0]}, after "
            f"{(r.get('load_avg_after') or ['–'])[0]}, on {r.get('cores')} cores (other work shares the machine)",
            f"- recorded in `benchmarks/results/{path.name}`",
            "",
            _md_table(["figure", "value"], head),
            "",
            "<details><summary>every figure</summary>",
            "",
            _md_table(["figure", "value"], generic_rows(rest)),
            "",
            "</details>",
            "",
        ]
    return out


def write_docs(results: dict) -> Path:
    imgs = plot(results)
    m = results.get("machine", {})
    out = [
        "# Capacity benchmarks",
        "",
        "Generated by `python -m benchmarks` from the figures in `benchmarks/results/latest.json`; do not edit by "
        "hand, re-run instead. Every row of a table is measured in the same run on the same machine, so the "
        "ratios are what to read: the machines are shared and noisy, absolute figures move from run to run.",
        "",
        f"- command: `{results.get('command')}` ({'quick' if results.get('quick') else 'full'} mode, "
        f"{results.get('seconds', 0):.0f} s, {results.get('generated_at')})",
        "- reproduce: `make bench-quick` (a few minutes) or `make bench` (full sizes); "
        "`make bench-check` compares the ratios with `benchmarks/baseline.json`; `python -m benchmarks.report` "
        "rewrites this page from the last results",
        "",
        *_busy_warning(m),
        "## Machine",
        "",
        _md_table(
            ["what", "value"],
            [
                [
                    k.replace("_", " "),
                    _fmt(v) if not isinstance(v, list) else ", ".join(map(str, v)),
                ]
                for k, v in m.items()
            ]
            + [
                ["wrk", results.get("http", {}).get("wrk", "–")],
                ["Serve ingress", results.get("http", {}).get("serve_ingress", "–")],
            ],
        ),
        "",
    ]

    res = results.get("reservations", {})
    out += [
        "## Reservations: one hot SKU, many concurrent callers",
        "",
        f"At each level ({', '.join(map(str, res.get('callers', [])))}) that many concurrent asyncio callers in "
        "one Python process share N one-unit reservations of a single SKU whose stock equals N, through one "
        "harness (the engine through `benchmarks/engine_load.py`, the alternatives through "
        "`benchmarks/reservations_alternatives.py`, with at most 64 PostgreSQL or Redis connections: more callers "
        "wait for one, as in a real service). `oversold` is read back from the store afterwards "
        "(units recorded as reserved minus the stock); `conserved` checks remaining + reserved = stock and "
        "that the store agrees with what the callers were told.",
        "",
    ]
    if res.get("rows"):
        out += [_md_table(RES_HEAD, reservation_rows(results)), ""]
        if "reservations" in imgs:
            out += [f"![reservations]({imgs['reservations']})", ""]
        seen = {}
        for r in sorted_reservations(results):
            seen.setdefault(r["strategy"], r)  # one line per strategy (the note of its first level)
        out += [
            f"- `{n}`: {STRATEGY_TEXT.get(n, '')}" + (f"; {r['note']}" if r.get("note") else "")
            for n, r in seen.items()
        ] + [""]
    engine = results.get("engine", {})
    if _skipped(engine):
        out += [f"The inventory engine row is missing: {_skipped(engine)}.", ""]

    out += ["## Scaling: shards x callers, extra local Ray nodes", ""]
    scaling = results.get("scaling", {})
    if _skipped(scaling):
        out += [f"Not measured: {_skipped(scaling)}.", ""]
    elif scaling.get("grid"):
        head = ["nodes", "shards", "callers", "reservations/s", "p50 ms", "p99 ms", "oversold"]
        out += [
            _md_table(
                head,
                [
                    [
                        _fmt(g.get("nodes", 1)),
                        _fmt(g.get("shards", 1)),
                        _fmt(g["callers"]),
                        _fmt(g.get("reservations_per_s"), 0),
                        _fmt(g.get("p50_ms"), 2),
                        _fmt(g.get("p99_ms"), 2),
                        _fmt(g.get("oversold")),
                    ]
                    for g in scaling["grid"]
                ],
            ),
            "",
        ]
        if "scaling" in imgs:
            out += [f"![scaling]({imgs['scaling']})", ""]
        out += [f"- {line}" for line in scaling.get("notes", [])] + [""]

    section = results.get("search", {})
    out += ["## Search: Tantivy actor vs PostgreSQL full-text search", ""]
    if _skipped(section):
        out += [f"Not measured: {_skipped(section)}.", ""]
    elif section:
        out += [_md_table(["figure", "value"], generic_rows(section)), ""]
    out += checkout_section(results.get("checkout", {}))
    out += standalone_checkout_cpu_section()  # before/after runs of benchmarks/checkout.py --cpu
    out += standalone_search_sections()  # full-size search runs recorded by benchmarks/search.py

    http = results.get("http", {})
    out += ["## HTTP: flashmart through Ray Serve vs plain uvicorn", ""]
    if _skipped(http):
        out += [f"Not measured: {_skipped(http)}.", ""]
    elif http.get("rows"):
        out += [
            f"wrk, {http.get('connections')} connections, 1 thread, {http.get('duration_s')} s per row after a "
            f"1 s warm-up, every row measured in {http.get('rounds', 1)} interleaved passes and shown by its "
            "median pass (the checkout row once: each buyer checks out once); client and servers share the "
            "machine's cores. `uvicorn_hello` is a FastAPI hello "
            "world on one uvicorn worker (the ceiling); `uvicorn_flashmart_healthz` is flashmart's own FastAPI "
            "app (its middleware included) on uvicorn without Serve, which separates the app's cost from "
            "Serve's; `serve_*` rows go through the deployed platform. The ceiling is measured while Ray "
            "runs, so both sides share the same background load.",
            "",
            _md_table(HTTP_HEAD, http_rows(results)),
            "",
        ]
        if "http" in imgs:
            out += [f"![http]({imgs['http']})", ""]
        out += _http_findings(http["rows"])
        out += [f"- not measured: {s}" for s in http.get("not_measured", [])]
        missing = [
            n
            for n in ("serve_search", "serve_add_to_cart")
            if not any(r["name"] == n for r in http["rows"])
        ]
        if missing:
            out += [
                f"- {', '.join(missing)}: the API had no such route when this ran (detected from "
                "/openapi.json)"
            ]
        out += [""]

    out += standalone_serve_sections()  # python -m benchmarks.serve_profile, the checkout wrk row
    out += standalone_cold_pages_section()  # python -m benchmarks.http_cold_pages, before and after
    out += [
        "## Ratios watched by `make bench-check`",
        "",
        "Reservation ratios compare each strategy at its best caller level in this run (its capacity); "
        "`engine_vs_pg_rowlock_at_N_callers` compares both at the most callers. A watched ratio that falls "
        "more than the margin below `benchmarks/baseline.json` fails the check.",
        "",
        _md_table(["ratio", "this run", "baseline"], ratio_rows(results)),
        "",
    ]
    errors = results.get("errors") or {}
    if errors:
        out += (
            ["## Sections that failed in this run", ""]
            + [f"- {k}: `{v}`" for k, v in errors.items()]
            + [""]
        )
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(out))
    return DOC


def main() -> None:
    """`python -m benchmarks.report`: rewrite docs/benchmarks.md and the plots from latest.json
    (after a new baseline, or a change to this module) without measuring again."""
    from benchmarks.run import RESULTS, ratios

    results = json.loads(RESULTS.read_text())
    results["ratios"] = ratios(
        results
    )  # derived from the stored figures: re-derived with the current rules
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {write_docs(results).relative_to(REPO)}")


if __name__ == "__main__":
    main()
