"""Test users with tokens: `user = make_user(api, "seller")` -> User(id, email, password, token, headers).

Customers register through the API. Staff roles cannot (registration only makes customers), so
they are created directly in the test database with storage.users.create_user, then log in over
HTTP like anybody else. Emails are unique per call.
"""

from __future__ import annotations

import gc
import os
import uuid
from dataclasses import dataclass, field

import httpx

from flashmart.permissions import ROLES

DEFAULT_PASSWORD = "correct-horse-battery-staple"


@dataclass
class User:
    id: int
    email: str
    password: str
    token: str
    headers: dict[str, str]
    role: str = "customer"
    name: str = ""
    refresh_token: str = ""
    extra: dict = field(default_factory=dict)


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def login(api: httpx.Client, email: str, password: str) -> dict:
    r = api.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, f"login failed: {r.status_code} {r.text}"
    return r.json()


def make_user(
    api: httpx.Client,
    role: str = "customer",
    db=None,
    *,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    name: str | None = None,
) -> User:
    """A fresh account of `role`, logged in. `db` (only for staff roles) may be a psycopg connection,
    a Settings or a database URL; by default the test session's database is found from `api`."""
    assert role in ROLES, f"unknown role {role!r}"
    email = email or unique_email(role)
    name = name or f"Test {role.title()}"
    if role == "customer":
        r = api.post(
            "/api/v1/auth/register", json={"email": email, "password": password, "name": name}
        )
        assert r.status_code == 201, f"register failed: {r.status_code} {r.text}"
    else:
        _create_staff(db if db is not None else _database_url_for(api), email, password, name, role)
    tokens = login(api, email, password)
    token = tokens["access_token"]
    return User(
        id=tokens["user"]["id"],
        email=email,
        password=password,
        token=token,
        headers={"Authorization": f"Bearer {token}"},
        role=role,
        name=name,
        refresh_token=tokens["refresh_token"],
    )


def _create_staff(db, email: str, password: str, name: str, role: str) -> None:
    import psycopg
    from psycopg.rows import dict_row

    from flashmart.storage.users import create_user

    if isinstance(db, psycopg.Connection):
        with db.transaction():
            row = create_user(db, email, password, name, role)
    else:
        url = db if isinstance(db, str) else db.database_url
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            row = create_user(conn, email, password, name, role)
    assert row is not None, f"email {email} already taken"


_urls: dict[str, str] = {}


def _database_url_for(api: httpx.Client) -> str:
    """The database of the platform `api` talks to: FLASHMART_TEST_DATABASE_URL if set, else the
    session's Settings whose api_url is the client's base URL (the conftest fixtures hold it), so
    `make_user(api, role)` works without threading a db fixture through every test."""
    base = str(api.base_url).rstrip("/")
    if base in _urls:
        return _urls[base]
    url = os.environ.get("FLASHMART_TEST_DATABASE_URL", "")
    if not url:
        from flashmart.settings import Settings

        for obj in gc.get_objects():
            if isinstance(obj, Settings) and obj.api_url == base and obj.database_url:
                url = obj.database_url
                break
    assert url, (
        "cannot find the test database: pass db=<db fixture or platform settings> to make_user"
    )
    _urls[base] = url
    return url
