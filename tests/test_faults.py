"""The real faults the chaos scenarios inject, each against embedded servers of this test's own data
directory: SIGKILL and SIGSTOP of PostgreSQL and Redis, the lost COMMIT reply of the fault proxy, and
the gateway fault proxy's 429 storm in front of a real localstripe. Each checks what the fault must
do (the server really dies or stops answering, then comes back with what was committed; the gateway
answers 429 during the storm, then forwards again) and that it only reached this data directory's
processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from types import SimpleNamespace

import httpx
import psycopg
import pytest
import redis
import stripe

from flashmart.actors.payments.gateway import StripeGateway
from flashmart.actors.payments.types import Authorised
from flashmart.settings import Settings
from flashmart.sim import faults
from flashmart.sim.scenario import Fault
from flashmart.storage import embedded, pg_fault_proxy

WAIT_S = 60


def wait_for(condition, what: str, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"not within {timeout_s}s: {what}")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    data = tmp_path_factory.mktemp("faults")
    settings = Settings(_env_file=None, data_dir=data, database_fault_proxy=True)
    embedded.start_postgres(data)
    embedded.start_redis(data)
    pg_fault_proxy.start_pg_fault_proxy(data)
    yield settings.resolved()
    pg_fault_proxy.stop_pg_fault_proxy(data)
    embedded.stop_redis(data)
    embedded.stop_postgres(data)


def direct_url(settings: Settings) -> str:
    return f"postgresql://postgres:@/flashmart?host={embedded.postgres_dir(settings.data_dir)}"


def pg_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.Error:
        return False


def redis_answers(settings: Settings) -> bool:
    try:
        return bool(
            redis.Redis.from_url(
                settings.redis_url, socket_timeout=1, socket_connect_timeout=1
            ).ping()
        )
    except redis.RedisError:
        return False


def in_background(fn, *args) -> threading.Thread:
    th = threading.Thread(target=fn, args=args, daemon=True)
    th.start()
    return th


def test_only_this_data_directorys_postgres_processes_are_signalled(servers):
    pids = embedded.postgres_processes(servers.data_dir)
    postmaster = embedded.postgres_pid(servers.data_dir)
    assert pids[0] == postmaster and len(pids) > 1  # the postmaster and its forked helpers
    import psutil

    for pid in pids[1:]:
        assert postmaster in [p.pid for p in psutil.Process(pid).parents()]


def test_postgres_killed_with_sigkill_recovers_what_was_committed(servers):
    url = direct_url(servers)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS crash_kept (v int)")
        conn.execute("INSERT INTO crash_kept VALUES (41)")
    before = embedded.postgres_processes(servers.data_dir)
    detail = faults.kill_postgres(servers, down_s=0.5)
    assert "SIGKILL" in detail, detail
    assert all(not embedded._alive(p) for p in before)  # really killed, not stopped cleanly
    assert embedded.postgres_pid(servers.data_dir) not in before
    with psycopg.connect(url) as conn:
        assert (41,) in conn.execute("SELECT v FROM crash_kept").fetchall()


def test_postgres_frozen_with_sigstop_answers_nothing_then_carries_on(servers):
    url = direct_url(servers)
    th = in_background(faults.freeze_postgres, servers, 6.0)
    wait_for(
        lambda: all(
            embedded._process_state(p) == "T" for p in embedded.postgres_processes(servers.data_dir)
        ),
        "every PostgreSQL process stopped",
    )
    assert not pg_answers(url)  # connect_timeout: a frozen server answers nothing
    th.join(WAIT_S)
    wait_for(lambda: pg_answers(url), "PostgreSQL answers after SIGCONT")


def test_redis_killed_with_sigkill_comes_back_with_its_append_only_file(servers):
    client = redis.Redis.from_url(servers.redis_url, socket_timeout=5)
    client.set("fault:kept", "yes")
    client.execute_command("BGREWRITEAOF")  # durable now, whatever the fsync policy
    wait_for(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0, "AOF rewritten")
    pid = embedded.redis_pid(servers.data_dir)
    detail = faults.kill_redis(servers, down_s=0.5)
    assert "SIGKILL" in detail, detail
    assert not embedded._alive(pid) and embedded.redis_pid(servers.data_dir) != pid
    wait_for(lambda: redis_answers(servers), "Redis answers again")
    assert client.get("fault:kept") == b"yes"


def test_redis_frozen_with_sigstop_times_out_then_carries_on(servers):
    th = in_background(faults.freeze_redis, servers, 5.0)
    pid = embedded.redis_pid(servers.data_dir)
    wait_for(lambda: embedded._process_state(pid) == "T", "Redis stopped")
    assert not redis_answers(servers)
    th.join(WAIT_S)
    wait_for(lambda: redis_answers(servers), "Redis answers after SIGCONT")


def test_the_proxy_loses_the_reply_of_a_commit_the_server_made_durable(servers):
    direct, proxied = direct_url(servers), servers.database_url
    with psycopg.connect(direct, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS commit_lost (v text)")
    with psycopg.connect(proxied) as conn:  # unarmed: forwards everything
        conn.execute("INSERT INTO commit_lost VALUES ('plain')")
        conn.commit()
    in_background(faults.lose_commit_reply, servers, 1, 30.0)
    wait_for(lambda: (pg_fault_proxy.control(servers.data_dir) or {}).get("armed") == 1, "armed")
    conn = psycopg.connect(proxied)
    conn.execute("INSERT INTO commit_lost VALUES ('reply lost')")
    with pytest.raises(psycopg.OperationalError):
        conn.commit()  # the connection drops: to the writer, the outcome is unknown
    conn.close()
    with psycopg.connect(direct) as check:  # yet the server committed it
        rows = {r[0] for r in check.execute("SELECT v FROM commit_lost").fetchall()}
    assert rows == {"plain", "reply lost"}
    assert pg_fault_proxy.control(servers.data_dir)["cut_total"] == 1
    with psycopg.connect(proxied) as conn:  # the cut was one connection: the next one works
        conn.execute("INSERT INTO commit_lost VALUES ('after')")
        conn.commit()


# --- the gateway's 429 storm ---------------------------------------------------------------------

STRIPE_KEY = Settings(_env_file=None).stripe_secret_key
STORM_S = 8.0  # long enough that the first call lands inside it even on a loaded machine


@pytest.fixture(scope="module")
def gateway_proxy(tmp_path_factory):
    """A real localstripe with the gateway fault proxy of sim/faults.py in front of it."""
    data = tmp_path_factory.mktemp("gateway")
    upstream = embedded.start_localstripe(data, embedded.free_port())
    port = embedded.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flashmart.sim.faults", "gateway-proxy", "--port", str(port)]
        + ["--upstream", upstream]
    )
    try:
        embedded.wait_until(lambda: embedded.port_open("127.0.0.1", port), 120, "proxy started")
        yield SimpleNamespace(stripe_api_base=f"http://127.0.0.1:{port}", data_dir=data)
    finally:
        proc.terminate()
        proc.wait(30)
        embedded.stop_localstripe(data)


def list_intents(base: str) -> httpx.Response:
    return httpx.get(f"{base}/v1/payment_intents", auth=(STRIPE_KEY, ""), timeout=30)


def proxy_state(base: str) -> dict:
    return httpx.get(f"{base}{faults.CONTROL_PATH}", timeout=30).json()


def test_a_429_storm_answers_stripes_rate_limit_error_then_forwards_again(gateway_proxy):
    base = gateway_proxy.stripe_api_base
    assert list_intents(base).status_code == 200  # before the storm: forwarded
    storm = Fault(kind="gateway_429", at_s=0, duration_s=STORM_S, error_rate=1.0)
    outcome: list[str] = []
    th = in_background(lambda: outcome.append(faults.inject(gateway_proxy, storm, [])))
    wait_for(lambda: proxy_state(base)["rate_limit_share"] == 1.0, "the storm began")
    r = list_intents(base)
    assert time.time() < proxy_state(base)["until"]  # that call was inside the storm
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limit"
    assert r.headers["Stripe-Should-Retry"] == "true"
    with pytest.raises(stripe.RateLimitError):  # what the SDK makes of it
        stripe.StripeClient(STRIPE_KEY, base_addresses={"api": base}).v1.payment_intents.list()
    th.join(WAIT_S)
    assert outcome and outcome[0].endswith(": 2 calls rate-limited"), outcome  # the injector's log
    wait_for(lambda: list_intents(base).status_code == 200, "the storm is over: forwarded again")


def test_the_payments_client_backs_off_and_retries_through_429s_and_charges_once(gateway_proxy):
    base = gateway_proxy.stripe_api_base
    r = httpx.post(f"{base}{faults.CONTROL_PATH}", json={"rate_limit_next": 2}, timeout=30)
    assert r.status_code == 200, r.text
    order_id = uuid.uuid4().hex

    async def authorise():
        gateway = StripeGateway(STRIPE_KEY, base, backoff_base_s=0.01)
        try:
            return await gateway.authorise(order_id, 1500, "EUR", "pm_card_visa"), gateway.retries
        finally:
            await gateway.close()

    outcome, retries = asyncio.run(authorise())
    assert isinstance(outcome, Authorised), outcome
    assert retries == 2  # both 429s were retried, after a backoff
    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": base})
    found = client.v1.payment_intents.search({"query": f"metadata['order_id']:'{order_id}'"})
    assert [pi.status for pi in found.data] == ["requires_capture"]  # one authorisation
