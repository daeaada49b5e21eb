"""The watchdog of the embedded servers: a server killed with SIGKILL is started again on its same
socket and data directory (its data still there), with a bounded backoff when it keeps dying."""

from __future__ import annotations

import os
import signal

import psycopg
import redis

from flashmart.settings import Settings
from flashmart.storage import embedded, watchdog
from flashmart.storage.watchdog import RESTART_MAX_S, RestartPolicy


def test_restarts_back_off_while_a_server_keeps_dying_and_the_backoff_is_forgotten_once_calm():
    p = RestartPolicy(first_s=1.0, max_s=8.0, calm_s=60.0)
    assert p.due(100.0)  # the first restart at once
    p.restarting(100.0)
    waits = []
    t = 100.0
    for _ in range(6):  # it dies again at once each time
        t += p.wait_s()
        assert not p.due(t - 0.01) and p.due(t)
        p.restarting(t)
        waits.append(p.wait_s())
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0, 8.0]  # doubling, bounded
    assert (
        p.due(t + 60.0) and p.wait_s() == 0.0
    )  # it stayed up a minute: back to an immediate start
    assert RESTART_MAX_S <= 60  # a dead server is never left down for longer than a minute


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def _pg_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            return conn.execute("SELECT count(*) FROM kept").fetchone()[0] == 1
    except psycopg.Error:
        return False


def test_a_killed_redis_and_postgres_are_started_again(tmp_path):
    from flashmart import platform

    data = tmp_path.resolve()
    pg_url = embedded.start_postgres(data)
    redis_url = embedded.start_redis(data)
    settings = Settings(_env_file=None, data_dir=data)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)")
        redis.Redis.from_url(redis_url).set("kept", "1")
        platform._start_watchdog(settings)  # what `flashmart up` starts after the servers
        assert watchdog.watchdog_pid(data) is not None

        old = embedded.redis_pid(data)
        os.kill(old, signal.SIGKILL)
        embedded.wait_until(
            lambda: embedded.redis_pid(data) not in (None, old) and _redis_answers(redis_url),
            120,
            "Redis was not started again",
        )
        assert redis.Redis.from_url(redis_url).get("kept") == b"1"  # its append-only file

        pids = embedded.postgres_processes(data)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        embedded.wait_until(
            lambda: embedded.postgres_pid(data) not in (None, pids[0]) and _pg_answers(pg_url),
            180,  # crash recovery on a loaded machine
            "PostgreSQL was not started again",
        )
        embedded.wait_until(
            lambda: watchdog.restarts_logged(data) == 2, 60, "the two restarts were not logged"
        )
        log = watchdog.watchdog_log(data).read_text()
        assert "redis" in log and "postgres" in log and "started again" in log, log
        # what `flashmart status` shows of it
        assert platform._watchdog_ok(settings).endswith("2 restarts logged)")
    finally:
        platform.stop_backing_services(
            settings.model_copy(update={"stripe_api_base": "x", "object_store_url": "x"})
        )
    assert watchdog.watchdog_pid(data) is None and embedded.redis_pid(data) is None


def test_a_server_stopped_on_purpose_is_left_stopped(tmp_path):
    """A stop (flashmart down's, a test's gateway outage) removes the pid file: not a death."""
    data = tmp_path.resolve()
    embedded.start_redis(data)
    try:
        embedded.stop_redis(data)
        dog = watchdog.Watchdog(watchdog.servers_of(data, redis=True))
        dog.check()  # what the running watchdog does every half second
        assert dog.restarts == {"redis": 0} and embedded.redis_pid(data) is None
    finally:
        embedded.stop_redis(data)
