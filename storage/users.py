"""Accounts and credentials: argon2 password hashes, HS256 access JWTs, opaque refresh tokens.

Refresh tokens are random strings given to the client once; only their sha256 is stored. Every
refresh revokes the presented token and issues a successor in the same family; presenting a
token that was already rotated means someone replayed it, so the whole family is revoked.

Sync functions serve the CLI (`flashmart user create`) and tests; the async ones serve the API.
Both take a psycopg connection (dict rows) and leave commit to the caller's transaction.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from flashmart.permissions import ROLES

JWT_ALGORITHM = "HS256"
JWT_ISSUER = "flashmart"
JWT_AUDIENCE = "flashmart-api"
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_CHARS = 256

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
# Verified when the email is unknown, so a failed login costs the same time either way
# (no account enumeration by timing).
_DUMMY_HASH = _hasher.hash("flashmart-no-such-user")


# --- passwords -------------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def normalize_email(email: str) -> str:
    return email.strip().lower()


# --- users -------------------------------------------------------------------------------------------

_INSERT_USER = """
INSERT INTO users (email, password_hash, name, role) VALUES (%s, %s, %s, %s)
ON CONFLICT (email) DO NOTHING
RETURNING id, email, name, role, created_at, token_generation, disabled_at
"""
_USER_COLUMNS = "id, email, name, role, created_at, token_generation, disabled_at"
_USER_BY_EMAIL = f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE email = %s"
_USER_BY_ID = f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s"


def _check_new_user(email: str, password: str, name: str, role: str) -> tuple[str, str, str, str]:
    # ValueError, not assert: the CLI passes operator input straight through and reports the message
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    if not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
        raise ValueError(
            f"password must have {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"
        )
    if "@" not in email or len(email) > 254:
        raise ValueError(f"{email!r} is not an email address")
    return normalize_email(email), hash_password(password), name.strip(), role


def create_user(conn, email: str, password: str, name: str, role: str) -> dict | None:
    """Insert a user; None when the email is taken. Used by the CLI and by tests for staff roles."""
    with conn.cursor() as cur:
        cur.execute(_INSERT_USER, _check_new_user(email, password, name, role))
        return cur.fetchone()


def find_by_email(conn, email: str) -> dict | None:
    with conn.cursor() as cur:
        cur.execute(_USER_BY_EMAIL, (normalize_email(email),))
        return cur.fetchone()


def set_role(conn, user_id: int, role: str) -> int | None:
    """Change a role; the new token generation (older access tokens are revoked), None if no user.
    The caller publishes the revocation after its commit (storage.revocations)."""
    assert role in ROLES, f"unknown role {role!r}"
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE users SET role = %s, token_generation = token_generation + 1 WHERE id = %s "
            "RETURNING token_generation",
            (role, user_id),
        )
        row = cur.fetchone()
    return None if row is None else _first(row)


def _first(row) -> Any:
    return row["token_generation"] if isinstance(row, dict) else row[0]


_UPDATE_ACCOUNT = """
UPDATE users SET
    role = COALESCE(%(role)s, role),
    disabled_at = CASE WHEN %(disabled)s::boolean IS NULL THEN disabled_at
                       WHEN %(disabled)s THEN COALESCE(disabled_at, now()) ELSE NULL END,
    token_generation = token_generation + 1
WHERE id = %(id)s
RETURNING {columns}
"""


async def update_account_async(
    conn, user_id: int, *, role: str | None = None, disabled: bool | None = None
) -> dict | None:
    """Change a role and/or disable (enable) an account, raising its token generation so every access
    token issued before stops working; a disabled account also loses its refresh tokens. None when
    there is no such user. The caller publishes the revocation after its commit."""
    assert role is None or role in ROLES, f"unknown role {role!r}"
    async with conn.cursor() as cur:
        await cur.execute(
            _UPDATE_ACCOUNT.format(columns=_USER_COLUMNS),
            {"id": user_id, "role": role, "disabled": disabled},
        )
        row = await cur.fetchone()
    if row is not None and disabled:
        await revoke_all_for_user_async(conn, user_id)
    return row


async def create_user_async(conn, email: str, password: str, name: str, role: str) -> dict | None:
    """As create_user; the argon2 hash is computed by the caller's thread (see serve.routes.auth)."""
    async with conn.cursor() as cur:
        await cur.execute(_INSERT_USER, _check_new_user(email, password, name, role))
        return await cur.fetchone()


async def insert_user_async(
    conn, email: str, password_hash: str, name: str, role: str
) -> dict | None:
    """Insert with a hash computed elsewhere (off the event loop); None when the email is taken."""
    assert role in ROLES, f"unknown role {role!r}"
    async with conn.cursor() as cur:
        await cur.execute(_INSERT_USER, (normalize_email(email), password_hash, name.strip(), role))
        return await cur.fetchone()


async def find_by_email_async(conn, email: str) -> dict | None:
    async with conn.cursor() as cur:
        await cur.execute(_USER_BY_EMAIL, (normalize_email(email),))
        return await cur.fetchone()


async def find_by_id_async(conn, user_id: int) -> dict | None:
    async with conn.cursor() as cur:
        await cur.execute(_USER_BY_ID, (user_id,))
        return await cur.fetchone()


# --- access tokens (JWT) -----------------------------------------------------------------------------


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired or of the wrong kind; the message says which."""


def issue_access_token(
    secret: str,
    ttl_s: int,
    user_id: int,
    role: str,
    email: str,
    *,
    generation: int = 0,
    session_id: str | None = None,
) -> str:
    """`generation` is the user's token generation (users.token_generation) and `session_id` the
    refresh-token family: either can revoke the token before it expires (storage.revocations)."""
    now = int(time.time())
    claims = {
        "gen": generation,
        "sub": str(user_id),
        "role": role,
        "email": email,
        "typ": "access",
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    if session_id is not None:
        claims["sid"] = session_id
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def decode_access_token(secret: str, token: str) -> dict[str, Any]:
    """Verified claims of an access token, or InvalidToken. Only HS256 is accepted (no 'none')."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            audience=JWT_AUDIENCE,
            issuer=JWT_ISSUER,
            options={"require": ["exp", "iat", "sub", "role", "typ"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("the access token has expired; refresh it or log in again") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken("the access token is not valid") from exc
    if (
        claims.get("typ") != "access"
        or claims.get("role") not in ROLES
        or not str(claims["sub"]).isdigit()
        or not isinstance(claims.get("gen", 0), int)
    ):
        raise InvalidToken("the access token is not valid")
    return claims


# --- device tokens ---------------------------------------------------------------------------------
# Given at every successful login and sent back by the client at its next login: proof that this
# device has logged into this account before, so the account-wide lockout (login.account, which
# anyone can fill by guessing from many addresses) does not apply to it; it has its own bucket.


def issue_device_token(secret: str, ttl_s: int, user_id: int, email: str) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "email": normalize_email(email),
        "typ": "device",
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def device_token_id(secret: str, token: str, email: str) -> str | None:
    """The id of a valid device token issued for `email`; None for anything else (never an error:
    a stale device token only means the login is treated like one from a new device)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            audience=JWT_AUDIENCE,
            issuer=JWT_ISSUER,
            options={"require": ["exp", "sub", "typ", "jti"]},
        )
    except jwt.PyJWTError:
        return None
    if claims.get("typ") != "device" or claims.get("email") != normalize_email(email):
        return None
    return str(claims["jti"])


# --- refresh tokens --------------------------------------------------------------------------------


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


_INSERT_REFRESH = """
INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at) VALUES (%s, %s, %s, %s)
"""


async def issue_refresh_token_async(
    conn, user_id: int, ttl_s: int, family_id: uuid.UUID | None = None
) -> str:
    token = new_refresh_token()
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl_s)
    async with conn.cursor() as cur:
        await cur.execute(
            _INSERT_REFRESH, (_sha256(token), user_id, family_id or uuid.uuid4(), expires_at)
        )
    return token


@dataclass(frozen=True)
class Rotated:
    user: dict
    refresh_token: str
    family_id: uuid.UUID


@dataclass(frozen=True)
class RefreshRefused:
    reason: str  # "unknown" | "expired" | "reused" | "disabled"
    user_id: int | None = None
    family_id: uuid.UUID | None = None


async def rotate_refresh_token_async(conn, token: str, ttl_s: int) -> Rotated | RefreshRefused:
    """Exchange a refresh token for its successor. The row lock makes two concurrent uses of one
    token resolve as one rotation and one reuse (which then revokes the family)."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT user_id, family_id, expires_at, revoked_at FROM refresh_tokens WHERE token_hash = %s FOR UPDATE",
            (_sha256(token),),
        )
        row = await cur.fetchone()
        if row is None:
            return RefreshRefused("unknown")
        if row["revoked_at"] is not None:
            await revoke_family_async(conn, row["family_id"])
            return RefreshRefused("reused", row["user_id"], row["family_id"])
        if row["expires_at"] <= datetime.now(UTC):
            return RefreshRefused("expired", row["user_id"], row["family_id"])
        await cur.execute(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE token_hash = %s", (_sha256(token),)
        )
        user = await find_by_id_async(conn, row["user_id"])
        if user is None:
            return RefreshRefused("unknown")
        if user["disabled_at"] is not None:
            return RefreshRefused("disabled", row["user_id"], row["family_id"])
    successor = await issue_refresh_token_async(conn, row["user_id"], ttl_s, row["family_id"])
    return Rotated(user, successor, row["family_id"])


async def revoke_family_async(conn, family_id: uuid.UUID) -> int:
    async with conn.cursor() as cur:
        await cur.execute(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = %s AND revoked_at IS NULL",
            (family_id,),
        )
        return cur.rowcount


async def revoke_refresh_token_async(conn, token: str) -> dict | None:
    """Log out: revoke the session (family) the token belongs to. Returns its row, None if unknown."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = %s", (_sha256(token),)
        )
        row = await cur.fetchone()
    if row is not None:
        await revoke_family_async(conn, row["family_id"])
    return row


async def revoke_all_for_user_async(conn, user_id: int) -> int:
    async with conn.cursor() as cur:
        await cur.execute(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL",
            (user_id,),
        )
        return cur.rowcount


def issue_guest_order_token(
    settings, order_id: int | str, email: str, ttl_s: int | None = None
) -> str:
    """A token that opens one order for the guest who placed it (the checkout answer's and the
    notification email's tracking link); read back by serve/auth.py."""
    now = int(time.time())
    claims = {
        "sub": f"order:{order_id}",
        "email": email.strip().lower(),
        "typ": "guest_order",
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": now,
        "exp": now + (ttl_s or settings.refresh_token_ttl_s),
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=JWT_ALGORITHM)
