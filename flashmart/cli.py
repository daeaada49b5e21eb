"""The `flashmart` command: up, down, status, user create, demo, sim."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings

import typer
from rich.console import Console
from rich.table import Table

from flashmart.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
user_app = typer.Typer(no_args_is_help=True, help="Manage accounts.")
app.add_typer(user_app, name="user")
console = Console()
err = Console(stderr=True, soft_wrap=True)  # one error = one line, never wrapped

ROLES = ("customer", "seller", "admin", "support", "courier")


# Each flashmart actor is a process of its own: about 25 Ray workers on one node (shards, carts,
# checkout, payments, search, Serve's replicas, proxy and controller, ...), most of them idle. The
# raylet warns every time its workers pass another multiple (from 4x on) of its startup concurrency,
# which is the node's CPU count (2 on a small machine), so every `flashmart up` or `demo` printed one
# "WARNING: N PYTHON worker processes have been started ..." line per actor or two. The warning is
# meant for runaway task fan-out; flashmart's worker count is fixed by its deployment. Starting up to
# 8 workers at a time moves the first warning to 32 workers: a deployment that grows past that, or a
# leak of workers, still shows. Only a Ray head `flashmart up` starts gets it (it is read by the raylet).
RAY_WORKER_STARTUP_CONCURRENCY = {"RAY_worker_maximum_startup_concurrency": "8"}


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    logging.getLogger("ray").setLevel(logging.ERROR)


def _quiet_serve() -> None:
    """Importing Ray Serve sets its logger to INFO (it configures it on import), which put "Started
    Serve in namespace ..." lines on the terminal between `up`'s own messages: warnings stay."""
    import ray.serve  # noqa: F401

    logging.getLogger("ray.serve").setLevel(logging.WARNING)


def _fail(message: str) -> None:
    """One clear line, no traceback, non-zero exit."""
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(1)


def _load_settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:
        _fail(f"invalid configuration: {exc}".replace("\n", " ")[:400])
        raise


# --- up / down / status ---------------------------------------------------------------------------


def bring_up(settings: Settings) -> tuple[Settings, float, bool]:
    """Start what is not running yet; return (resolved settings, seconds taken, already_running)."""
    from flashmart import platform as pf
    from flashmart.storage.embedded import EmbeddedError

    t0 = time.perf_counter()
    started_ray = False
    running_before = set(pf.running_embedded(settings))
    try:
        resolved = pf.start_backing_services(settings)
        if resolved.ray_address:
            address = resolved.ray_address
        else:
            if not pf.ray_head_running(settings):
                for name, value in RAY_WORKER_STARTUP_CONCURRENCY.items():
                    os.environ.setdefault(name, value)  # the raylet reads it from its environment
                with console.status("starting Ray head with dashboard…"):
                    pf.start_ray_head(resolved)
                started_ray = True
            address = f"127.0.0.1:{resolved.ray_gcs_port}"
        already = (not started_ray) and pf.api_is_up(resolved)
        if not already:
            _quiet_serve()
            with console.status("deploying actors and the Serve application…"):
                pf.connect_ray(address, own_head=not resolved.ray_address)
                if resolved.ray_worker_node and started_ray:  # a second node, for chaos runs
                    pf.start_ray_worker_node(resolved, address, token_auth=True)
                pf.deploy(resolved)
        pf.write_state(
            resolved, started_ray=started_ray or pf.read_state(resolved).get("started_ray", False)
        )
        return resolved, time.perf_counter() - t0, already
    except Exception as exc:
        # leave nothing half started, but never stop what was already running before this `up`
        if started_ray:
            pf.stop_ray_head(settings)
        started_now = [p for p in pf.running_embedded(settings) if p not in running_before]
        pf.stop_backing_services(settings, only=started_now)
        known = isinstance(exc, (pf.PlatformError, EmbeddedError))
        _fail(str(exc) if known else f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        raise


@app.command()
def up() -> None:
    """Start flashmart: embedded PostgreSQL/Redis/localstripe (unless configured), Ray, actors, the API."""
    _quiet()
    settings = _load_settings()
    resolved, took_s, already = bring_up(settings)
    if already:
        console.print("[yellow]flashmart is already running[/]")
    else:
        console.print(f"[green]flashmart is up[/] (ready in {took_s:.1f}s)")
    _print_status(resolved)


@app.command()
def down() -> None:
    """Stop everything `up` started. Data stays in the data directory for the next `up`."""
    _quiet()
    from flashmart import platform as pf

    settings = _load_settings()
    stopped = []
    if settings.ray_address:  # a cluster we joined: remove only our application
        pf.shutdown_app(settings)
        stopped.append("serve-app")
    elif pf.ray_head_running(settings):  # the head on flashmart's GCS port is flashmart's
        with console.status("stopping Ray (Serve, actors, dashboard)…"):
            pf.stop_ray_head(settings)
        stopped.append("ray")
    stopped += pf.stop_backing_services(settings)
    pf.clear_state(settings)
    console.print(
        f"stopped: {', '.join(stopped) or 'nothing was running'}; data kept in {settings.data_dir.resolve()}"
    )


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Where everything is and whether each part is healthy."""
    _quiet()
    from flashmart import platform as pf

    settings = _load_settings()
    report = pf.status_report(settings)
    if as_json:
        console.print_json(json.dumps(report))
    else:
        _print_table(report)
    if not report["healthy"]:
        raise typer.Exit(1)


def _print_status(resolved: Settings) -> None:
    from flashmart import platform as pf

    _print_table(pf.status_report(resolved))


def _print_table(report: dict) -> None:
    table = Table(show_header=True, header_style="bold")
    table.add_column("part")
    table.add_column("where")
    table.add_column("health")
    for part in report["parts"]:
        colour = "green" if part["healthy"] else "red"
        table.add_row(part["name"], part["url"], f"[{colour}]{part['detail']}[/]")
    console.print(table)
    console.print(f"Serve ingress: [bold]{report['ingress']}[/]   data: {report['data_dir']}")
    console.print(
        "Ray dashboard is token-guarded: `ray get-auth-token` prints the token to paste in."
    )


# --- users ----------------------------------------------------------------------------------------


@user_app.command("create")
def user_create(
    email: str = typer.Option(..., help="login email"),
    role: str = typer.Option("customer", help=" | ".join(ROLES)),
    name: str = typer.Option("", help="display name"),
    password_stdin: bool = typer.Option(
        False,
        "--password-stdin",
        help="read the password from the first line of standard input (scripts); "
        "otherwise it is asked for, twice, without echo",
    ),
) -> None:
    """Create an account with a role (sellers, admins, support and couriers are created this way).
    The password never goes on the command line, where other users and shell history see it."""
    _quiet()
    if role not in ROLES:
        _fail(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    password = _read_password(password_stdin)
    if len(password) < 8:
        _fail("password must have at least 8 characters")
    from flashmart import platform as pf

    settings = _load_settings()
    resolved = pf.resolved_or_none(settings)
    if resolved is None:
        _fail("the database is not running; run `flashmart up` first")
    import psycopg
    from psycopg.rows import dict_row

    from flashmart.storage.audit import audit_sync
    from flashmart.storage.users import create_user

    try:
        with psycopg.connect(resolved.database_url, row_factory=dict_row) as conn:
            user = create_user(
                conn, email=email, password=password, name=name or email.split("@")[0], role=role
            )
            if user is not None:  # no actor account: the operator at this machine's shell
                audit_sync(
                    conn,
                    None,
                    "user.create",
                    "user",
                    user["id"],
                    {"role": role, "email": user["email"], "via": "cli", "os_user": _os_user()},
                )
    except ValueError as exc:
        _fail(str(exc))
    if user is None:
        _fail(f"a user with email {email} already exists")
    console.print(f"created {role} {user['email']} (id {user['id']})")


def _read_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


# --- demo and simulations -------------------------------------------------------------------------


@app.command()
def demo(
    products: int = typer.Option(2000, help="demo catalog size"),
    scenario: str = typer.Option("smoke", help="flash-sale scenario to run"),
) -> None:
    """Start flashmart, load a demo catalog, run a short flash sale and print its report."""
    _quiet()
    settings = _load_settings()
    resolved, took_s, _ = bring_up(settings)
    console.print(f"[green]platform ready[/] in {took_s:.1f}s at {resolved.api_url}")
    from flashmart.sim.runner import run_scenario_by_name

    ok = run_scenario_by_name(resolved, scenario, catalog_products=products, console=console)
    raise typer.Exit(0 if ok else 1)


@app.command()
def sim(
    scenario: str = typer.Argument(
        ..., help="scenario name (smoke, black-friday, chaos) or a path to a scenario file"
    ),
    driver: str | None = typer.Option(None, help="http (default) or actors"),
    out: str | None = typer.Option(None, help="directory for the report JSON and PNG plots"),
) -> None:
    """Run a flash-sale simulation against the running platform and check every invariant."""
    _quiet()
    from flashmart import platform as pf
    from flashmart.sim.runner import run_scenario_by_name

    settings = _load_settings()
    resolved = pf.resolved_or_none(settings)
    if resolved is None or not pf.api_is_up(resolved):
        _fail("flashmart is not running; run `flashmart up` first")
    ok = run_scenario_by_name(resolved, scenario, driver=driver, out_dir=out, console=console)
    raise typer.Exit(0 if ok else 1)


if __name__ == "__main__":
    app()
