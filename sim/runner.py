"""Run a scenario against a running platform: prepare, sell, inject faults, settle, check the
invariants from the sources of truth, report. Entry point of `flashmart sim`, `flashmart demo` and
`python -m flashmart.sim`."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flashmart.sim import invariants, report
from flashmart.sim.faults import FaultSchedule
from flashmart.sim.machine_load import LOAD_GENERATOR, MachineLoad
from flashmart.sim.plan import BuyerPlan, make_plans
from flashmart.sim.scenario import Scenario, load_scenario
from flashmart.sim.setup import new_run_id, prepare

SAMPLE_INTERVAL_S = 0.25
LAST_CALL_WAVES_MAX = 4
START_DELAY_S = (
    1.5  # between the last setup step and the first arrival (faults are armed meanwhile)
)
SPAWN_START_DELAY_S = 6.0  # spawned load processes need a few seconds to import


class StockSampler:
    """Samples the hot SKUs' stock from PostgreSQL (the ledger the shards write behind) during the sale,
    reconnecting across a database restart."""

    def __init__(self, database_url: str, skus: list[str]):
        self.database_url, self.skus = database_url, skus
        self.samples: list[dict] = []
        self.t0 = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="stock-sampler")

    def start(self, t0: float) -> None:
        self.t0 = t0
        self._thread.start()

    def _loop(self) -> None:
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(
                        self.database_url, autocommit=True, row_factory=dict_row, connect_timeout=3
                    )
                now = time.time() - self.t0
                for sku, agg in invariants.stock_of(conn, self.skus).items():
                    self.samples.append(
                        {
                            "t": round(now, 3),
                            "sku": sku,
                            "available": agg["available"],
                            "held": agg["held"],
                            "sold": agg["sold"],
                        }
                    )
            except psycopg.Error:
                conn = None
            self._stop.wait(SAMPLE_INTERVAL_S)
        if conn is not None:
            conn.close()

    def stop(self) -> list[dict]:
        self._stop.set()
        self._thread.join(10)
        return self.samples


def eager(plan: BuyerPlan) -> bool:
    """A buyer who means to buy and can pay."""
    return not plan.abandon and plan.retry_card is not None


def demand_exceeds_supply(plans: list[BuyerPlan], sku: str, units: int) -> bool:
    return sum(p.quantity for p in plans if p.sku == sku and eager(p)) >= units


def _progress(console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def run_scenario_by_name(
    settings,
    scenario: str,
    *,
    catalog_products: int | None = None,
    driver: str | None = None,
    out_dir: str | None = None,
    console=None,
) -> bool:
    """Run `scenario` (a shipped name or a file path); True when every invariant holds."""
    console = console or Console()
    try:
        sc = load_scenario(scenario)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[bold red]error:[/] {str(exc)[:500]}")
        return False
    return run_scenario(
        settings,
        sc,
        catalog_products=catalog_products,
        driver=driver,
        out_dir=out_dir,
        console=console,
    )


def run_scenario(
    settings,
    sc: Scenario,
    *,
    catalog_products: int | None = None,
    driver: str | None = None,
    out_dir: str | None = None,
    console=None,
) -> dict | bool:
    console = console or Console()
    driver = driver or sc.load.driver
    if driver not in ("http", "actors"):
        console.print(f"[bold red]error:[/] unknown driver {driver!r}; use http or actors")
        return False
    run_id, prov = new_run_id(), provenance()
    console.print(f"[bold]scenario {sc.name}[/] (run {run_id}, driver {driver}): {sc.description}")
    with console.status("preparing: catalog, admin, warehouses, hot SKUs, flash sales, buyers…"):
        prepared = prepare(
            settings, sc, run_id, catalog_products=catalog_products, log=console.print
        )
    plans = make_plans(
        sc, prepared.buyers, prepared.hot, prepared.browse_product_ids, prepared.search_terms
    )
    # the gateway counts a sale's limit per card: each buyer has their own, made when they check out
    cards = buyer_cards(settings, plans) if driver == "http" else None
    skus = [h.sku for h in prepared.hot]
    console.print(
        "hot SKUs: "
        + ", ".join(f"{h.sku} ({h.units} units, limit {h.per_buyer_limit})" for h in prepared.hot)
        + f"; {len(plans)} buyers, arrival {sc.buyers.arrival} over {sc.buyers.arrival_window_s}s"
    )
    scopes = [
        invariants.SkuScope(h.sku, h.per_buyer_limit, demand_exceeds_supply(plans, h.sku, h.units))
        for h in prepared.hot
    ]

    spawn = driver == "http" and sc.load.processes > 1
    t0 = time.time() + (SPAWN_START_DELAY_S if spawn else START_DELAY_S)
    sampler = StockSampler(settings.database_url, skus)
    schedule = FaultSchedule(settings, sc.faults, skus)
    schedule.start(t0)
    sampler.start(t0)
    machine = machine_load(settings)
    machine.start()
    started = time.time()
    with _progress(console) as bar:
        task = bar.add_task(f"{sc.name}: buyers done", total=len(plans))

        def on_progress(done: int) -> None:
            bar.update(task, completed=done)

        if driver == "http":
            from flashmart.sim.drivers.http import run_http

            result = run_http(
                settings.api_url,
                plans,
                concurrency_max=sc.load.concurrency_max,
                processes=sc.load.processes,
                timeout_s=sc.load.request_timeout_s,
                retries_max=sc.behaviour.retries_max,
                think_s=sc.behaviour.think_time_ms / 1000,
                t0=t0,
                on_progress=on_progress,
                cards=cards,
            )
        else:
            from flashmart.sim.drivers.actors import run_actors

            result = run_actors(
                settings,
                plans,
                run_id,
                concurrency_max=sc.load.concurrency_max,
                t0=t0,
                on_progress=on_progress,
            )
        bar.update(task, completed=len(plans))
    sale_s = time.time() - t0
    # the crowd's last answer, before any last-call wave (buyers sent back after the sale for units
    # that came back)
    every_answer_s = max((o.done_s for o in result.outcomes), default=0.0)
    # spawned load processes have ended by now: their CPU is what they measured themselves
    machine_during_sale = machine.stop({LOAD_GENERATOR: result.cpu_s} if spawn else None)
    faults_log = schedule.join()
    with console.status(
        "settling: waiting for sagas, captures and the sweeper; last call for free units…"
    ):
        settle_state = invariants.settle(
            settings.database_url,
            run_id,
            skus,
            sc.load.settle_timeout_s,
            with_orders=(driver == "http"),
        )
        waves = (
            last_call(settings, sc, plans, result, scopes, t0, driver, cards)
            if sc.behaviour.last_call
            else []
        )
        if waves:
            settle_state = invariants.settle(
                settings.database_url,
                run_id,
                skus,
                sc.load.settle_timeout_s,
                with_orders=(driver == "http"),
            )
    samples = sampler.stop()
    with console.status("checking invariants against PostgreSQL and the payment gateway…"):
        verdict = invariants.verify(
            settings,
            run_id,
            scopes,
            started - 5,
            with_orders=(driver == "http"),
            settle_state=settle_state,
        )
        paid = paid_buyers(settings.database_url, skus, driver)
    rep = report.build(
        sc,
        prepared,
        plans,
        result,
        t0,
        samples,
        verdict,
        paid,
        faults_log,
        {
            "driver": driver,
            "settle": settle_state,
            "last_call_waves": waves,
            "sale_wall_s": round(sale_s, 2),
            "every_buyer_answered_s": round(every_answer_s, 2),
            "processes": sc.load.processes if driver == "http" else 1,
            "concurrency_max": sc.load.concurrency_max,
            "machine": machine_during_sale,
            "platform": {
                "hold_ttl_s": settings.hold_ttl_s,
                "serve_replicas": settings.serve_replicas_min,
                "gateway_rate_per_s": settings.gateway_rate_per_s,
                "gateway_endpoint_rate_per_s": settings.gateway_endpoint_rate_per_s,
            },
            **prov,
        },
    )
    report.print_report(rep, console)
    out = Path(out_dir) if out_dir else Path(settings.data_dir) / "sim" / f"{sc.name}-{run_id}"
    paths = report.save(rep, samples, result.events, out)
    console.print(f"report: {paths[0]}; plots: {', '.join(str(p) for p in paths[1:])}")
    colour = "green" if verdict.ok else "bold red"
    console.print(f"[{colour}]invariants {'hold' if verdict.ok else 'FAILED'}[/]")
    return verdict.ok


def buyer_cards(settings, plans: list[BuyerPlan]):
    """Each buyer's card number (the one of the buyer their plan names, when they share one), made
    into a PaymentMethod by the driver at checkout."""
    import random

    from flashmart.sim.cards import card_number
    from flashmart.sim.drivers.http import Cards

    base = random.randrange(10**13)
    return Cards(
        settings.stripe_api_base,
        settings.stripe_secret_key,
        {
            p.index: card_number(base + (p.card_of if p.card_of is not None else i))
            for i, p in enumerate(plans)
        },
    )


def provenance() -> dict:
    """What ran: the command line, the code's commit, when."""
    import subprocess
    import sys

    argv = list(sys.argv)
    if argv and argv[0].endswith("__main__.py"):
        argv[0] = "python -m flashmart.sim"
    elif argv:
        argv[0] = Path(argv[0]).name
    try:
        here = Path(__file__).resolve().parent
        commit = subprocess.run(
            ["git", "-C", str(here), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "command": " ".join(argv),
        "code": f"commit {commit}" if commit else "unknown commit",
        "started_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def machine_load(settings) -> MachineLoad:
    """The platform's processes: its embedded servers and its Ray cluster, found by the GCS port of the
    Ray this process is connected to (a private one under `--own-platform`, the head of `flashmart up`
    under `flashmart demo`), else the configured one."""
    import ray

    port = settings.ray_gcs_port
    if ray.is_initialized():
        port = int(ray.get_runtime_context().gcs_address.rsplit(":", 1)[1])
    return MachineLoad(settings.data_dir, port)


def paid_buyers(database_url: str, skus: list[str], driver: str) -> dict[str, set[int]]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        if driver == "http":
            rows = conn.execute(
                """SELECT DISTINCT i.sku, o.user_id AS buyer FROM order_items i JOIN orders o ON o.id = i.order_id
                   WHERE i.sku = ANY(%s) AND o.status = ANY(%s)""",
                (skus, list(invariants.UNIT_STATUSES)),
            ).fetchall()
        else:
            rows = conn.execute(
                """SELECT DISTINCT r.sku, r.buyer_id AS buyer FROM inventory_journal r
                   JOIN inventory_journal c ON c.sku = r.sku AND c.hold_id = r.hold_id AND c.kind = 'HoldCommitted'
                   WHERE r.sku = ANY(%s) AND r.kind = 'StockReserved'""",
                (skus,),
            ).fetchall()
    out: dict[str, set[int]] = {s: set() for s in skus}
    for r in rows:
        out[r["sku"]].add(r["buyer"])
    return out


def last_call(
    settings,
    sc: Scenario,
    plans: list[BuyerPlan],
    result,
    scopes,
    t0: float,
    driver: str,
    cards=None,
) -> list[dict]:
    """A sold-out SKU must sell every unit. Units can come back after the crowd has gone: declined
    checkouts release theirs, holds lost in a crash return, abandoned carts' holds expire. Refused buyers
    then try again, in waves, while units are free (waiting for live holds to expire when that fits in
    the settle budget)."""
    deadline = time.monotonic() + sc.load.settle_timeout_s
    by_index = {o.index: o for o in result.outcomes}
    waves = []
    for _ in range(LAST_CALL_WAVES_MAX):
        with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
            stock = invariants.stock_of(conn, [s.sku for s in scopes])
            free = {
                s.sku: stock[s.sku]["available"]
                for s in scopes
                if s.demand_exceeds_supply and stock[s.sku]["available"] > 0
            }
            if not free:
                expiries = [
                    invariants.live_hold_expiry(conn, s.sku)
                    for s in scopes
                    if s.demand_exceeds_supply and stock[s.sku]["held"] > 0
                ]
                expiries = [e for e in expiries if e]
                wait_s = max(expiries) - time.time() + 2.0 if expiries else None
                if wait_s is None or time.monotonic() + wait_s > deadline:
                    break
                time.sleep(max(0.0, wait_s))  # the shard's timer returns the units; then sell them
                continue
        chosen = []
        for sku, units in free.items():
            refused = [
                p
                for p in plans
                if p.sku == sku
                and eager(p)
                and by_index.get(p.index) is not None
                and by_index[p.index].result not in ("bought",)
            ]
            chosen += refused[: max(units * 2, 5)]
        if not chosen:
            break
        wave = _run_wave(settings, sc, chosen, t0, driver, cards)
        for o in wave.outcomes:
            if o.result == "bought" or by_index[o.index].result != "bought":
                by_index[o.index] = o
        result.events.extend(wave.events)
        waves.append(
            {
                "free_units": free,
                "buyers": len(chosen),
                "bought": sum(1 for o in wave.outcomes if o.result == "bought"),
            }
        )
    result.outcomes[:] = list(by_index.values())
    return waves


def _run_wave(settings, sc: Scenario, chosen: list[BuyerPlan], t0: float, driver: str, cards):
    import asyncio

    if driver == "http":
        from flashmart.sim.drivers.http import last_call as http_last_call

        return asyncio.run(
            http_last_call(
                settings.api_url,
                chosen,
                t0,
                sc.load.request_timeout_s,
                sc.behaviour.retries_max,
                cards,
            )
        )
    from flashmart.sim.drivers.actors import drive

    for p in chosen:
        p.first_card, p.arrival_s = p.retry_card or p.first_card, 0.0
    return asyncio.run(
        drive(settings, chosen, f"lc{int(time.time())}", time.time(), sc.load.concurrency_max)
    )
