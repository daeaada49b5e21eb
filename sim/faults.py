"""Fault injection during a sale, on a schedule relative to the sale's start.

- kill_shard: ray.kill(shard, no_restart=False) on the hot SKU's inventory shard (Ray restarts it;
  it recovers from PostgreSQL).
- kill_serve_replica: ray.kill of one Serve replica of the app (the Serve controller replaces it).
- restart_postgres: stop and start the embedded PostgreSQL (storage.embedded), as a crash-restart.
- stop_redis: stop the embedded Redis for `duration_s`, then start it again (append-only file kept).
- kill_postgres / kill_redis: SIGKILL of the embedded server (PostgreSQL: the postmaster and every
  process it forked), down for `duration_s`, then started again as a supervisor would: PostgreSQL
  replays its WAL (crash recovery), Redis reloads its append-only file.
- freeze_postgres / freeze_redis: SIGSTOP of the same processes for `duration_s`, then SIGCONT: a
  server that accepts connections and answers nothing (clients must time out, not hang).
- lose_commit_reply: arms the lost-COMMIT proxy (storage/pg_fault_proxy.py, running when the platform
  has `database_fault_proxy` on) to cut the connection of the next `count` COMMITs within
  `duration_s`, right after the server answered: committed, but the writer never hears so.
- lose_worker_node: the platform's second Ray node (Settings.ray_worker_node, flashmart/platform.py)
  is lost as a machine is: SIGKILL of every process of that node at once (its `ray start` root,
  raylet, object store, agents, workers: the process tree recorded when it started, never a process
  of the head). The carts, checkout and payments actors and a search replica live there
  (actors/placement.py); Ray must see the node dead and restart them (max_restarts) on the head.
  The fault waits for that, then, with `restart`, starts the node again `duration_s` after the loss.
Signals only ever go to the PIDs of the servers this platform's data directory started (read from
their pid files), never to processes found by name: another PostgreSQL on the machine is not touched.
- gateway_fail / gateway_slow: through the **gateway fault proxy** below when the platform's
  stripe_api_base points at one (it fails `error_rate` of calls with 500 before they reach the
  gateway, or adds `delay_ms`); otherwise the embedded localstripe process is paused (SIGSTOP, then
  SIGCONT after duration_s): every gateway call in the window stalls, which is what a slow gateway
  looks like from the platform.
- gateway_429: a rate-limit storm through the same proxy: `error_rate` of the calls in the window are
  answered 429 with Stripe's rate-limit error body, before they reach the gateway (Stripe did not act
  on a rate-limited request). Without the proxy it is skipped: a paused gateway is not a 429.

    python -m flashmart.sim.faults gateway-proxy --port 8421 --upstream http://127.0.0.1:8420
    # then run the platform with FLASHMART_STRIPE_API_BASE=http://127.0.0.1:8421
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import threading
import time
from pathlib import Path

import httpx

from flashmart.sim.scenario import Fault

CONTROL_PATH = "/__fault__"
START_ATTEMPTS_MAX = 5


def connect_ray(settings) -> None:
    """Join the platform's Ray cluster in the namespace its actors live in ("flashmart"; a platform
    deployed from a driver without a namespace has them in an anonymous one, found by the directory)."""
    import ray

    if ray.is_initialized():
        return
    if not settings.ray_address:  # the platform's own head: token-guarded
        use_token_auth()
    address = settings.ray_address or f"127.0.0.1:{settings.ray_gcs_port}"
    ray.init(address=address, namespace="flashmart", logging_level="ERROR", log_to_driver=False)
    names = ray.util.list_named_actors(all_namespaces=True)
    spaces = {a["namespace"] for a in names if a["name"] == "inventory-directory"}
    if spaces and "flashmart" not in spaces:
        ray.shutdown()
        ray.init(
            address=address, namespace=spaces.pop(), logging_level="ERROR", log_to_driver=False
        )


def use_token_auth() -> None:
    """Present the cluster's token (RAY_AUTH_TOKEN, or the head's own file: `ray get-auth-token`).
    Ray reads the auth mode into a cached config when it is first loaded, so setting RAY_AUTH_MODE
    in a process that loaded ray before (the simulator does) is not enough: the config is
    refreshed, or the driver connects without its token and the head answers InvalidAuthToken."""
    from ray._raylet import Config

    os.environ["RAY_AUTH_MODE"] = "token"
    Config.initialize("")


def kill_shard(settings, hot_skus: list[str]) -> str:
    import ray

    connect_ray(settings)
    names = {a["name"]: a["namespace"] for a in ray.util.list_named_actors(all_namespaces=True)}
    wanted = [n for n in names if any(n == f"inventory-hot-{s}" for s in hot_skus)] or [
        n for n in names if n.startswith("inventory-")
    ]
    if not wanted:
        return "no inventory shard actor found"
    name = wanted[0]
    ray.kill(ray.get_actor(name, namespace=names[name]), no_restart=False)
    return f"killed {name} (Ray restarts it)"


def kill_serve_replica(settings) -> str:
    import ray

    connect_ray(settings)
    # replicas are named actors "SERVE_REPLICA::<app>#<deployment>#<id>" in the "serve" namespace
    replicas = [
        a
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::")
    ]
    if not replicas:
        return "no Serve replica found"
    victim = random.choice(replicas)
    ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
    return f"killed replica {victim['name']} (the Serve controller replaces it)"


def restart_postgres(settings) -> str:
    from flashmart.storage import embedded

    data = Path(settings.data_dir)
    if embedded.postgres_pid(data) is None:
        return "skipped: PostgreSQL is not the embedded one"
    t = time.monotonic()
    embedded.stop_postgres(data)
    attempt = _start_postgres_again(settings)
    return (
        f"PostgreSQL stopped and started again in {time.monotonic() - t:.1f}s (attempts: {attempt})"
    )


def _pg_answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def stop_redis(settings, duration_s: float) -> str:
    from flashmart.storage import embedded

    data = Path(settings.data_dir)
    if embedded.redis_pid(data) is None:
        return "skipped: Redis is not the embedded one"
    embedded.stop_redis(data)
    time.sleep(duration_s)
    embedded.start_redis(data)
    return f"Redis stopped for {duration_s:.1f}s, then started again"


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def kill_postgres(settings, down_s: float) -> str:
    from flashmart.storage import embedded

    data = Path(settings.data_dir)
    pids = embedded.postgres_processes(data)
    if not pids:
        return "skipped: PostgreSQL is not the embedded one"
    _signal_all(pids, signal.SIGKILL)
    embedded.wait_until(
        lambda: all(not embedded._alive(p) for p in pids), 30, "PostgreSQL survived SIGKILL"
    )
    time.sleep(down_s)  # the outage itself
    t = time.monotonic()
    attempt = _start_postgres_again(settings)
    return (
        f"PostgreSQL killed (SIGKILL, {len(pids)} processes), down {down_s:.1f}s, crash recovery "
        f"and start took {time.monotonic() - t:.1f}s (attempts: {attempt})"
    )


def _start_postgres_again(settings) -> int:
    from flashmart.storage import embedded

    data = Path(settings.data_dir)
    for attempt in range(1, START_ATTEMPTS_MAX + 1):
        try:  # pg_ctl waits 10 s at most; crash recovery on a loaded machine can take longer
            embedded.start_postgres(data)
            return attempt
        except Exception:
            if embedded.postgres_pid(data) is not None and _pg_answers(settings.database_url):
                return attempt
            if attempt == START_ATTEMPTS_MAX:
                raise
            time.sleep(2.0)
    return START_ATTEMPTS_MAX


def freeze_postgres(settings, duration_s: float) -> str:
    from flashmart.storage import embedded

    pids = embedded.postgres_processes(Path(settings.data_dir))
    if not pids:
        return "skipped: PostgreSQL is not the embedded one"
    _freeze(pids, duration_s)
    return f"PostgreSQL frozen (SIGSTOP, {len(pids)} processes) for {duration_s:.1f}s, then SIGCONT"


def _freeze(pids: list[int], duration_s: float) -> None:
    _signal_all(pids, signal.SIGSTOP)
    try:
        time.sleep(duration_s)
    finally:
        _signal_all(pids, signal.SIGCONT)


def kill_redis(settings, down_s: float) -> str:
    from flashmart.storage import embedded

    data = Path(settings.data_dir)
    pid = embedded.redis_pid(data)
    if pid is None:
        return "skipped: Redis is not the embedded one"
    os.kill(pid, signal.SIGKILL)
    embedded.wait_until(lambda: not embedded._alive(pid), 30, "Redis survived SIGKILL")
    time.sleep(down_s)
    embedded.start_redis(data)
    return f"Redis killed (SIGKILL), down {down_s:.1f}s, started again from its append-only file"


def freeze_redis(settings, duration_s: float) -> str:
    from flashmart.storage import embedded

    pid = embedded.redis_pid(Path(settings.data_dir))
    if pid is None:
        return "skipped: Redis is not the embedded one"
    _freeze([pid], duration_s)
    return f"Redis frozen (SIGSTOP) for {duration_s:.1f}s, then SIGCONT"


def lose_commit_reply(settings, count: int, duration_s: float) -> str:
    from flashmart.storage import pg_fault_proxy

    data = Path(settings.data_dir)
    before = pg_fault_proxy.control(data)
    if before is None:
        return "skipped: no lost-COMMIT proxy in front of PostgreSQL (database_fault_proxy off)"
    pg_fault_proxy.control(data, {"cut_commits": count, "duration_s": duration_s})
    time.sleep(duration_s)
    after = pg_fault_proxy.control(data) or before
    cut = after["cut_total"] - before["cut_total"]
    return f"lost-COMMIT proxy armed for {count} COMMITs over {duration_s:.1f}s: {cut} replies lost"


NODE_RECOVERY_BOUND_S = 300  # Ray's health checks see a dead node in ~30 s; restarts come after


def lose_worker_node(settings, down_s: float, restart: bool) -> str:
    from flashmart import platform as pf
    from flashmart.actors.placement import actor_nodes, worker_node_id
    from flashmart.storage import embedded

    state = pf.worker_node_state(settings)
    procs = pf.worker_node_processes(settings)
    if not procs:
        return "skipped: the platform has no Ray worker node (ray_worker_node off)"
    connect_ray(settings)
    node = worker_node_id()
    victims = sorted(name for name, where in actor_nodes().items() if where == node)
    t = time.monotonic()
    _signal_all([p.pid for p in procs], signal.SIGKILL)
    embedded.wait_until(
        lambda: not any(p.is_running() and p.status() != "zombie" for p in procs),
        30,
        "the worker node survived SIGKILL",
    )
    embedded.wait_until(
        lambda: worker_node_id() != node, NODE_RECOVERY_BOUND_S, "Ray never saw the node dead"
    )
    seen_dead_s = time.monotonic() - t
    embedded.wait_until(
        lambda: _all_alive_elsewhere(victims, node),
        NODE_RECOVERY_BOUND_S,
        f"actors of the lost node not restarted within {NODE_RECOVERY_BOUND_S}s: {victims}",
    )
    back_s = time.monotonic() - t
    detail = (
        f"worker node lost (SIGKILL, {len(procs)} processes) with {len(victims)} actors on it "
        f"({_summary(victims)}); Ray saw it dead after {seen_dead_s:.1f}s, every one of them "
        f"alive again on another node after {back_s:.1f}s"
    )
    if restart:
        time.sleep(max(0.0, down_s - (time.monotonic() - t)))
        started = time.monotonic()
        pf.start_ray_worker_node(settings, state["gcs_address"], token_auth=state["token_auth"])
        detail += f"; started again after {time.monotonic() - t:.1f}s (join took {time.monotonic() - started:.1f}s)"
    return detail


def _all_alive_elsewhere(names: list[str], lost_node: str | None) -> bool:
    from flashmart.actors.placement import actor_nodes

    where = actor_nodes()
    return all(name in where and where[name] != lost_node for name in names)


def _summary(names: list[str]) -> str:
    """ "carts-0..3, checkout-0..1, search-1" rather than every name."""
    groups: dict[str, int] = {}
    for name in names:
        group = name.rstrip("0123456789").rstrip("-_") or name
        groups[group] = groups.get(group, 0) + 1
    return ", ".join(f"{g} x{n}" if n > 1 else g for g, n in sorted(groups.items())) or "none"


def gateway(settings, fault: Fault) -> str:
    base = settings.stripe_api_base.rstrip("/")
    try:
        rate_limited_before = _rate_limited_total(base) if fault.kind == "gateway_429" else 0
        r = httpx.post(
            base + CONTROL_PATH,
            timeout=2,
            json={
                "error_rate": fault.error_rate if fault.kind == "gateway_fail" else 0.0,
                "delay_ms": fault.delay_ms if fault.kind == "gateway_slow" else 0.0,
                "rate_limit_share": fault.error_rate if fault.kind == "gateway_429" else 0.0,
                "duration_s": fault.duration_s,
            },
        )
        if r.status_code == 200:
            if fault.kind == "gateway_fail":
                return f"fault proxy: {fault.error_rate:.0%} of gateway calls fail with 500 for {fault.duration_s}s"
            if fault.kind == "gateway_429":
                return _rate_limit_storm_outcome(base, fault, rate_limited_before)
            return f"fault proxy: +{fault.delay_ms:.0f} ms per call for {fault.duration_s}s"
    except httpx.HTTPError:
        pass
    if fault.kind == "gateway_429":
        return "skipped: no gateway fault proxy in front of the gateway (a 429 storm needs it)"
    from flashmart.storage import embedded

    pid = embedded.localstripe_pid(Path(settings.data_dir))
    if pid is None:
        return "skipped: no fault proxy and the gateway is not the embedded localstripe"
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(fault.duration_s)
    finally:
        os.kill(pid, signal.SIGCONT)
    return f"gateway stalled {fault.duration_s:.1f}s (localstripe paused with SIGSTOP; no fault proxy in front)"


def _rate_limited_total(base: str) -> int:
    r = httpx.get(base + CONTROL_PATH, timeout=5)
    return int(r.json().get("rate_limited_total", 0)) if r.status_code == 200 else 0


def _rate_limit_storm_outcome(base: str, fault: Fault, rate_limited_before: int) -> str:
    """Waits out the storm, then says how many calls the proxy answered 429 (0 would mean the storm
    met no payment traffic: a run's report shows it)."""
    time.sleep(fault.duration_s)
    answered = _rate_limited_total(base) - rate_limited_before
    return (
        f"fault proxy: {fault.error_rate:.0%} of gateway calls answered 429 rate_limit for "
        f"{fault.duration_s}s: {answered} calls rate-limited"
    )


def inject(settings, fault: Fault, hot_skus: list[str]) -> str:
    if fault.kind == "kill_shard":
        return kill_shard(settings, hot_skus)
    if fault.kind == "kill_serve_replica":
        return kill_serve_replica(settings)
    if fault.kind == "restart_postgres":
        return restart_postgres(settings)
    if fault.kind == "stop_redis":
        return stop_redis(settings, fault.duration_s)
    if fault.kind == "kill_postgres":
        return kill_postgres(settings, fault.duration_s)
    if fault.kind == "freeze_postgres":
        return freeze_postgres(settings, fault.duration_s)
    if fault.kind == "kill_redis":
        return kill_redis(settings, fault.duration_s)
    if fault.kind == "freeze_redis":
        return freeze_redis(settings, fault.duration_s)
    if fault.kind == "lose_commit_reply":
        return lose_commit_reply(settings, fault.count, fault.duration_s)
    if fault.kind == "lose_worker_node":
        return lose_worker_node(settings, fault.duration_s, fault.restart)
    return gateway(settings, fault)


class FaultSchedule:
    """Runs each fault at t0 + at_s in its own thread; the log says what happened and when."""

    def __init__(self, settings, faults: list[Fault], hot_skus: list[str]):
        self.settings, self.faults, self.hot_skus = settings, faults, hot_skus
        self.log: list[dict] = []
        self.threads: list[threading.Thread] = []

    def start(self, t0: float) -> None:
        if any(
            f.kind in ("kill_shard", "kill_serve_replica", "lose_worker_node") for f in self.faults
        ):
            connect_ray(self.settings)  # before the sale: connecting takes a second or two
        for f in self.faults:
            th = threading.Thread(
                target=self._run, args=(f, t0), daemon=True, name=f"fault-{f.kind}"
            )
            th.start()
            self.threads.append(th)

    def _run(self, f: Fault, t0: float) -> None:
        time.sleep(max(0.0, t0 + f.at_s - time.time()))
        started = time.time() - t0
        try:
            detail = inject(self.settings, f, self.hot_skus)
        except Exception as exc:
            detail = f"injection failed: {type(exc).__name__}: {str(exc)[:150]}"
        self.log.append(
            {
                "kind": f.kind,
                "at_s": round(started, 2),
                "took_s": round(time.time() - t0 - started, 2),
                "detail": detail,
            }
        )

    def join(self, timeout_s: float = 300) -> list[dict]:
        for th in self.threads:
            th.join(timeout_s)
        return sorted(self.log, key=lambda e: e["at_s"])


# --- the gateway fault proxy --------------------------------------------------------------------------


def run_gateway_proxy(port: int, upstream: str, host: str = "127.0.0.1") -> None:
    """A small HTTP proxy in front of the payment gateway (localstripe). POST /__fault__ with
    {error_rate, delay_ms, rate_limit_share, duration_s} makes calls fail with 500 (before reaching
    the gateway, or after it acted with the answer lost), slow, or rate-limited with 429 for a while;
    everything else is forwarded unchanged. GET /__fault__ reads the state and the 429s answered."""
    import asyncio

    from aiohttp import ClientSession, web

    state = {
        "error_rate": 0.0,
        "delay_ms": 0.0,
        "rate_limit_share": 0.0,
        "until": 0.0,
        "fail_next": 0,
        "acted_share": 0.5,
        "rate_limit_next": 0,
        "rate_limited_total": 0,
    }

    async def control(request: web.Request) -> web.Response:
        """{error_rate, delay_ms, rate_limit_share, duration_s}: a window of failures, delay or
        429s; {fail_next: n, acted_share: s}: exactly the next n calls fail (a share s of them after
        the gateway acted); {rate_limit_next: n}: exactly the next n calls are answered 429."""
        body = await request.json()
        state.update(
            error_rate=float(body.get("error_rate", 0)),
            delay_ms=float(body.get("delay_ms", 0)),
            rate_limit_share=float(body.get("rate_limit_share", 0)),
            until=time.time() + float(body.get("duration_s", 0)),
            fail_next=int(body.get("fail_next", 0)),
            acted_share=float(body.get("acted_share", 0.5)),
            rate_limit_next=int(body.get("rate_limit_next", 0)),
        )
        return web.json_response({"ok": True, **state})

    async def read_state(request: web.Request) -> web.Response:
        return web.json_response({**state, "now": time.time()})

    async def forward(request: web.Request) -> web.StreamResponse:
        if state["rate_limit_next"] > 0 or (
            time.time() < state["until"] and random.random() < state["rate_limit_share"]
        ):
            state["rate_limit_next"] = max(0, state["rate_limit_next"] - 1)
            state["rate_limited_total"] += 1
            return _rate_limited()
        failing = time.time() < state["until"] and random.random() < state["error_rate"]
        if state["fail_next"] > 0:
            state["fail_next"] -= 1
            failing = True
        if time.time() < state["until"] and state["delay_ms"]:
            await asyncio.sleep(state["delay_ms"] / 1000)
        # half of the failures happen before the gateway sees the call, half after it acted on it with
        # the answer lost on the way back: only an idempotency key keeps the retry from charging twice
        if failing and random.random() >= state["acted_share"]:
            return _injected_error()
        body = await request.read()
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        async with request.app["session"].request(
            request.method, upstream + request.path_qs, data=body, headers=headers
        ) as r:
            payload = await r.read()
            if failing:
                return _injected_error()
            return web.Response(body=payload, status=r.status, content_type=r.content_type)

    def _injected_error() -> web.Response:
        return web.json_response(
            {"error": {"type": "api_error", "message": "injected by the fault proxy"}}, status=500
        )

    def _rate_limited() -> web.Response:
        # what Stripe answers when an account sends too many requests: 429, an error of type
        # invalid_request_error with code rate_limit (the SDK raises RateLimitError on any 429), and
        # Stripe-Should-Retry: the request was not processed, a retry with backoff is safe
        return web.json_response(
            {
                "error": {
                    "type": "invalid_request_error",
                    "code": "rate_limit",
                    "message": "Request rate limit exceeded (injected by the fault proxy). "
                    "Retry with an exponential backoff.",
                    "doc_url": "https://stripe.com/docs/error-codes/rate-limit",
                }
            },
            status=429,
            headers={"Stripe-Should-Retry": "true"},
        )

    async def on_start(app):
        app["session"] = ClientSession()

    async def on_stop(app):
        await app["session"].close()

    app = web.Application()
    app.on_startup.append(on_start)
    app.on_cleanup.append(on_stop)
    app.router.add_post(CONTROL_PATH, control)
    app.router.add_get(CONTROL_PATH, read_state)
    app.router.add_route("*", "/{tail:.*}", forward)
    web.run_app(app, host=host, port=port, print=None)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m flashmart.sim.faults")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("gateway-proxy", help="fault proxy in front of the payment gateway")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    args = parser.parse_args()
    run_gateway_proxy(args.port, args.upstream.rstrip("/"))


if __name__ == "__main__":
    main()
