"""A members-first flash sale: members may buy from the sale's early access, everybody else from
the public opening. Buyers of both kinds arrive over the same window; a non-member who arrives
early is refused (403 `members_only`, with the opening time) and comes back at the opening.
The report shows members' and non-members' arrivals, refusals and purchases apart (a table, the
JSON, and `members-first.png`: cumulative arrivals and purchases over time per group), and checks
that no non-member bought before the opening and that no unit was oversold.

    python -m flashmart.sim.members_first [--own-platform] [--buyers 300] [--member-share 0.3]
        [--units 40] [--public-opens-s 20] [--admit-per-s N] [--out DIR]

With --admit-per-s the sale has a waiting room: every buyer takes a ticket first (members in the
members' lane, admitted ahead of the public lane, also after the opening) and buys once admitted.

Members are seeded as active memberships in PostgreSQL (their billing through the gateway is
covered by the membership tests; a few hundred subscriptions through the emulator would measure
the emulator). Everything else goes through the HTTP API as buyers use it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import signal
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

API = "/api/v1"
GOOD_CARD = "pm_card_visa"
EARLY_ACCESS_MIN = (
    1  # the plan's benefit; the sale opens to the public `public_opens_s` after start
)
ADDRESS = {
    "name": "Sim Buyer",
    "street": "1 Market St",
    "city": "San Francisco",
    "state": "CA",
    "zip": "94105",
    "country": "US",
}


@dataclass
class Buyer:
    user_id: int
    token: str
    member: bool
    arrival_s: float
    card: str = GOOD_CARD  # each buyer's own card (sim/cards.py): the sale's limit is per card too
    first_try_s: float = 0.0
    refused_early: bool = False
    bought_s: float | None = None
    result: str = "pending"  # bought | sold_out | limit_reached | error
    detail: str = ""
    order_id: str | None = None
    lane: str = ""  # the waiting room's lane: members | public ("" without a room)
    joined_s: float | None = None  # took a waiting-room ticket (from the public opening)
    admitted_s: float | None = None  # admitted by the waiting room


@dataclass
class Run:
    run_id: str
    sku: str
    units: int
    opens_at: float  # epoch seconds of the public opening
    started_at: float
    buyers: list[Buyer] = field(default_factory=list)
    admit_per_s: float | None = None  # the sale's waiting room admits this many a second


def _ok(r: httpx.Response, what: str, ok=(200, 201)) -> dict:
    if r.status_code not in ok:
        raise RuntimeError(f"{what}: HTTP {r.status_code} {r.text[:300]}")
    return r.json()


def prepare(
    settings,
    buyers: int,
    member_share: float,
    units: int,
    public_opens_s: float,
    seed: int = 7,
    admit_per_s: float | None = None,
) -> Run:
    """A product with `units` on sale, a plan with early access, buyers (a share of them members)."""
    import psycopg
    from psycopg.rows import dict_row
    from psycopg.types.json import Jsonb

    from flashmart.actors.membership.state import Membership
    from flashmart.storage.users import create_user, issue_access_token

    run_id = uuid.uuid4().hex[:8]
    rng = random.Random(seed)
    with (
        psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn,
        httpx.Client(base_url=settings.api_url, timeout=60) as api,
    ):
        email, password = f"sim-mf-admin-{run_id}@sim.flashmart.dev", secrets.token_urlsafe(18)
        create_user(conn, email, password, "Simulator Admin", "admin")
        token = _ok(
            api.post(f"{API}/auth/login", json={"email": email, "password": password}),
            "admin login",
        )["access_token"]
        admin = {"Authorization": f"Bearer {token}"}
        sku = f"SIM-MF-{run_id}"
        seller = conn.execute(
            "INSERT INTO sellers (name) VALUES ('sim seller') RETURNING id"
        ).fetchone()
        product = conn.execute(
            "INSERT INTO products (seller_id, name, price, weight_g, in_stock) "
            "VALUES (%s, %s, 99.00, 500, true) RETURNING id",
            (seller["id"], f"Members-first deal {run_id}"),
        ).fetchone()
        conn.execute(
            "INSERT INTO product_variants (product_id, sku) VALUES (%s, %s)", (product["id"], sku)
        )
        _ok(
            api.post(
                f"{API}/warehouses",
                headers=admin,
                json={"id": "sim-mf-wh", "name": "Sim MF", "lat": 37.77, "lon": -122.42},
            ),
            "warehouse",
            ok=(201, 409),
        )
        _ok(
            api.put(
                f"{API}/inventory/{sku}",
                headers=admin,
                json={"warehouses": [{"warehouse_id": "sim-mf-wh", "on_hand": units}]},
            ),
            "stock",
        )
        plan_id = f"sim-early-{run_id}"
        _ok(
            api.put(
                f"{API}/admin/memberships/plans/{plan_id}",
                headers=admin,
                json={
                    "id": plan_id,
                    "name": "Sim early access",
                    "tier": 1,
                    "price_minor": 999,
                    "billing_interval": "month",
                    "benefits": {"early_access_min": EARLY_ACCESS_MIN},
                },
            ),
            "plan",
        )
        # the sale starts in two seconds: every replica's benefits cache knows the members by then
        started = time.time() + 2.0
        opens_at = started + public_opens_s
        _ok(
            api.post(
                f"{API}/flash-sales",
                headers=admin,
                json={
                    "sku": sku,
                    "sale_price": 49.0,
                    "per_buyer_limit": 1,
                    "starts_at": datetime.fromtimestamp(opens_at, UTC).isoformat(),
                    "ends_at": (
                        datetime.fromtimestamp(opens_at, UTC) + timedelta(hours=2)
                    ).isoformat(),
                },
            ),
            "flash sale",
        )
        if admit_per_s:  # buyers queue; the members' lane is admitted first
            _ok(
                api.put(
                    f"{API}/flash-sales/{sku}/waiting-room",
                    headers=admin,
                    json={"admit_per_s": admit_per_s, "admission_ttl_s": 600},
                ),
                "waiting room",
            )
        emails = [f"sim-mf-{run_id}-{i}@sim.flashmart.dev" for i in range(buyers)]
        rows = conn.execute(
            "INSERT INTO users (email, password_hash, name, role) SELECT e, 'x', 'Sim Buyer', "
            "'customer' FROM unnest(%s::text[]) AS e RETURNING id, email",
            (emails,),
        ).fetchall()
        run = Run(run_id, sku, units, opens_at, started, admit_per_s=admit_per_s)
        window = public_opens_s + 5.0  # arrivals straddle the opening
        for r in rows:
            member = rng.random() < member_share
            run.buyers.append(
                Buyer(
                    r["id"],
                    issue_access_token(
                        settings.jwt_secret, 4 * 3600, r["id"], "customer", r["email"]
                    ),
                    member,
                    rng.uniform(0, window),
                )
            )
        for b in run.buyers:
            if b.member:
                state = Membership(
                    b.user_id, plan_id, "active", started, None, started + 30 * 86400
                )
                conn.execute(
                    "INSERT INTO memberships (user_id, plan_id, status, state, period_end) "
                    "VALUES (%s, %s, 'active', %s, now() + interval '30 days')",
                    (b.user_id, plan_id, Jsonb(state.as_dict())),
                )
    from flashmart.sim.cards import make_cards

    for b, card in zip(run.buyers, make_cards(settings, len(run.buyers))):
        b.card = card
    return run


QUEUE_POLL_S = 0.25
QUEUE_POLL_MAX_S = 2.0
QUEUE_WAIT_MAX_S = 300.0


async def _queue(api: httpx.AsyncClient, run: Run, b: Buyer, headers: dict) -> bool:
    """Take a waiting-room ticket (a non-member who is early comes back at the opening) and poll
    until admitted. False: gave up or refused (the result says why)."""
    url = f"{API}/flash-sales/{run.sku}/queue"
    deadline = time.time() + QUEUE_WAIT_MAX_S
    while time.time() < deadline:
        r = await api.post(url, headers=headers)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if r.status_code == 200:
            break
        if r.status_code == 404:  # no room (closed): buy directly
            return True
        if body.get("error") == "members_only":
            b.refused_early = True
            await asyncio.sleep(max(0.05, run.opens_at - time.time()) + random.uniform(0, 0.5))
            continue
        if body.get("error") in ("rate_limited", "overloaded", "unavailable"):
            await asyncio.sleep(0.2)
            continue
        b.result, b.detail = f"queue_{body.get('error', r.status_code)}", r.text[:200]
        return False
    else:
        b.result = "gave_up"
        return False
    b.joined_s, b.lane = time.time() - run.opens_at, body["lane"]
    while body.get("status") != "admitted":
        if time.time() > deadline:
            b.result = "gave_up"
            return False
        # as a page would: sooner when the room says the turn is near (a few polls per buyer)
        wait_s = float(body.get("estimated_wait_s") or 0)
        await asyncio.sleep(min(QUEUE_POLL_MAX_S, max(QUEUE_POLL_S, wait_s / 2)))
        r = await api.get(url, headers=headers)
        if r.status_code != 200:
            continue
        body = r.json()
    b.admitted_s = time.time() - run.opens_at
    return True


async def _buy(api: httpx.AsyncClient, run: Run, b: Buyer) -> None:
    await asyncio.sleep(max(0.0, run.started_at + b.arrival_s - time.time()))
    b.first_try_s = time.time() - run.opens_at
    headers = {"Authorization": f"Bearer {b.token}"}
    if run.admit_per_s and not await _queue(api, run, b, headers):
        return
    for attempt in range(60):
        r = await api.post(
            f"{API}/cart/items", json={"sku": run.sku, "quantity": 1}, headers=headers
        )
        if r.status_code == 200:
            break
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        reason = body.get("error", str(r.status_code))
        if reason == "members_only":
            b.refused_early = True
            # come back at the opening (told in the message), a little after, as people do
            await asyncio.sleep(max(0.05, run.opens_at - time.time()) + random.uniform(0, 0.5))
            continue
        if reason in ("rate_limited", "overloaded", "unavailable") and attempt < 59:
            await asyncio.sleep(0.2)
            continue
        b.result, b.detail = reason, body.get("message", "")[:200]
        return
    else:
        b.result = "gave_up"
        return
    out = await api.post(
        f"{API}/orders/checkout",
        json={"shipping_address": ADDRESS, "payment_method": {"type": "card", "token": b.card}},
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    if out.status_code == 201:
        b.result, b.order_id = "bought", out.json()["order_id"]
        b.bought_s = time.time() - run.opens_at
    else:
        b.result, b.detail = f"checkout_{out.status_code}", out.text[:200]


async def drive(settings, run: Run, concurrency_max: int = 128) -> None:
    limits = httpx.Limits(max_connections=concurrency_max)
    async with httpx.AsyncClient(base_url=settings.api_url, timeout=60, limits=limits) as api:
        await asyncio.gather(*(_buy(api, run, b) for b in run.buyers))


def report(settings, run: Run) -> dict:
    import psycopg

    def group(member: bool) -> dict:
        bs = [b for b in run.buyers if b.member == member]
        bought = [b for b in bs if b.result == "bought"]
        # the lanes at work: the wait of those who joined the room after the public opening
        waits = sorted(
            b.admitted_s - b.joined_s
            for b in bs
            if b.admitted_s is not None and b.joined_s is not None and b.joined_s >= 0
        )
        room = {
            "admitted": sum(b.admitted_s is not None for b in bs),
            "joined_after_opening": sum(b.joined_s is not None and b.joined_s >= 0 for b in bs),
            "median_wait_after_opening_s": round(waits[len(waits) // 2], 2) if waits else None,
        }
        return ({"waiting_room": room} if run.admit_per_s else {}) | {
            "buyers": len(bs),
            "arrived_before_opening": sum(b.first_try_s < 0 for b in bs),
            "refused_before_opening": sum(b.refused_early for b in bs),
            "bought": len(bought),
            "bought_before_opening": sum(b.bought_s is not None and b.bought_s < 0 for b in bought),
            "first_purchase_s": round(min((b.bought_s for b in bought), default=0.0), 2),
            "results": {r: sum(b.result == r for b in bs) for r in sorted({b.result for b in bs})},
        }

    with psycopg.connect(settings.database_url) as conn:
        sold = conn.execute(
            "SELECT count(*) FROM order_items i JOIN orders o ON o.id = i.order_id "
            "WHERE i.sku = %s AND o.status IN ('confirmed', 'shipped', 'delivered')",
            (run.sku,),
        ).fetchone()[0]
        early_strangers = conn.execute(
            "SELECT count(*) FROM orders o JOIN order_items i ON i.order_id = o.id "
            "WHERE i.sku = %s AND o.created_at < to_timestamp(%s) AND NOT EXISTS "
            "(SELECT 1 FROM memberships m WHERE m.user_id = o.user_id)",
            (run.sku, run.opens_at),
        ).fetchone()[0]
    members, others = group(True), group(False)
    return {
        "run_id": run.run_id,
        "sku": run.sku,
        "units": run.units,
        "admit_per_s": run.admit_per_s,
        "opens_at": datetime.fromtimestamp(run.opens_at, UTC).isoformat(),
        "members": members,
        "non_members": others,
        "units_sold": sold,
        "invariants": {
            "no_oversell": sold <= run.units,
            "no_non_member_bought_before_opening": early_strangers == 0
            and others["bought_before_opening"] == 0,
            "no_member_was_refused_early": members["refused_before_opening"] == 0,
        },
    }


def print_report(rep: dict, console) -> None:
    from rich.table import Table

    t = Table(
        title=f"members-first flash sale {rep['sku']}: {rep['units']} units, "
        f"{rep['units_sold']} sold"
    )
    t.add_column("")
    t.add_column("members", justify="right")
    t.add_column("non-members", justify="right")
    for key in (
        "buyers",
        "arrived_before_opening",
        "refused_before_opening",
        "bought",
        "bought_before_opening",
        "first_purchase_s",
    ):
        t.add_row(key.replace("_", " "), str(rep["members"][key]), str(rep["non_members"][key]))
    if "waiting_room" in rep["members"]:
        for key in ("admitted", "joined_after_opening", "median_wait_after_opening_s"):
            t.add_row(
                f"room: {key.replace('_', ' ')}",
                str(rep["members"]["waiting_room"][key]),
                str(rep["non_members"]["waiting_room"][key]),
            )
    console.print(t)
    for name, ok in rep["invariants"].items():
        console.print(f"{'[green]ok[/]' if ok else '[red]FAILED[/]'} {name.replace('_', ' ')}")


def run_members_first(
    settings,
    *,
    buyers: int,
    member_share: float,
    units: int,
    public_opens_s: float,
    out_dir: str | None = None,
    console=None,
    admit_per_s: float | None = None,
) -> dict:
    from rich.console import Console

    console = console or Console()
    with console.status("setting up the members-first sale..."):
        run = prepare(
            settings, buyers, member_share, units, public_opens_s, admit_per_s=admit_per_s
        )
    with console.status(
        f"{buyers} buyers arriving; the public opening is in {public_opens_s:.0f} s"
    ):
        asyncio.run(drive(settings, run))
    rep = report(settings, run)
    rep["buyer_outcomes"] = [asdict(b) | {"token": None} for b in run.buyers]
    print_report(rep, console)
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "members-first.json").write_text(json.dumps(rep, indent=2, default=str))
        rep["plot"] = str(plot(rep, Path(out_dir)))
        console.print(f"report: {Path(out_dir) / 'members-first.json'}; plot: {rep['plot']}")
    return rep


def series(rep: dict) -> dict[str, dict[str, list[float]]]:
    """Per group (members, non_members): the arrival times and purchase times, seconds from the
    public opening (negative: before it), sorted."""
    out = {}
    for group, member in (("members", True), ("non_members", False)):
        bs = [b for b in rep["buyer_outcomes"] if b["member"] == member]
        out[group] = {
            "arrivals": sorted(b["first_try_s"] for b in bs),
            "admissions": sorted(b["admitted_s"] for b in bs if b["admitted_s"] is not None),
            "purchases": sorted(b["bought_s"] for b in bs if b["bought_s"] is not None),
        }
    return out


def plot(rep: dict, out_dir: Path) -> Path:
    """members-first.png: cumulative arrivals (top) and purchases (bottom) over time, members and
    non-members apart, the public opening at 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = series(rep)
    room = bool(rep.get("admit_per_s"))
    fig, axes = plt.subplots(3 if room else 2, 1, figsize=(9, 9 if room else 6.5), sharex=True)
    top, bottom = axes[0], axes[-1]
    panels = [(top, "arrivals", "buyers arrived (cumulative)")]
    if room:
        panels.append((axes[1], "admissions", "admitted by the waiting room (cumulative)"))
    panels.append((bottom, "purchases", "units bought (cumulative)"))
    style = {"members": ("tab:purple", "members"), "non_members": ("tab:orange", "non-members")}
    for group, (colour, label) in style.items():
        for ax, key, _ in panels:
            ts = data[group][key]
            ax.step(ts, range(1, len(ts) + 1), where="post", color=colour, label=label)
    for ax, _, ylabel in panels:
        ax.set_ylabel(ylabel)
    bottom.axhline(rep["units"], color="grey", ls=":", lw=1, label=f"{rep['units']} units")
    bottom.set_xlabel("seconds from the public opening (members' early access before 0)")
    for ax in axes:
        ax.axvline(0, color="black", ls="--", lw=1, label="public opening")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    top.set_title(
        f"members-first flash sale {rep['sku']}: {rep['members']['buyers']} members, "
        f"{rep['non_members']['buyers']} non-members, {rep['units']} units"
        + (f", waiting room {rep['admit_per_s']:g}/s" if room else ""),
        fontsize=10,
    )
    fig.tight_layout()
    path = out_dir / "members-first.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m flashmart.sim.members_first", description=__doc__)
    p.add_argument("--buyers", type=int, default=300)
    p.add_argument("--member-share", type=float, default=0.3)
    p.add_argument("--units", type=int, default=40)
    p.add_argument("--public-opens-s", type=float, default=20.0)
    p.add_argument(
        "--admit-per-s",
        type=float,
        default=None,
        help="open a waiting room admitting this many buyers a second (members' lane first)",
    )
    p.add_argument("--out", default=None)
    p.add_argument("--own-platform", action="store_true")
    args = p.parse_args()
    if not (
        1 <= args.buyers <= 100_000
        and 0 <= args.member_share <= 1
        and 1 <= args.units
        and 1 <= args.public_opens_s <= EARLY_ACCESS_MIN * 60 - 1
        and (args.admit_per_s is None or 0 < args.admit_per_s <= 100_000)
    ):
        p.error(
            f"buyers 1..100000, member-share 0..1, units >= 1, "
            f"public-opens-s 1..{EARLY_ACCESS_MIN * 60 - 1} (inside the members' early access), "
            "admit-per-s > 0"
        )
    from flashmart.settings import Settings

    settings, stop = Settings(), None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.own_platform:
        from flashmart.sim.__main__ import _own_platform

        settings, stop = _own_platform(settings, gateway_proxy=False)
    else:
        settings = settings.resolved()
    try:
        rep = run_members_first(
            settings,
            buyers=args.buyers,
            member_share=args.member_share,
            units=args.units,
            public_opens_s=args.public_opens_s,
            out_dir=args.out,
            admit_per_s=args.admit_per_s,
        )
    finally:
        if stop:
            stop()
    return 0 if all(rep["invariants"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
