"""Who is calling, and may they? Route dependencies over `Authorization: Bearer <access JWT>`.

    principal: Principal = Depends(require("inventory.write"))   # 401 no/bad token, 403 wrong role
    principal: Principal | None = Depends(optional_principal)    # public route, identity if given
    principal: Principal = Depends(authenticated)                # any logged-in role

Tokens are verified locally (HS256, Settings.jwt_secret): no database round trip per request. A
session ended early (logout, role change, disabled account) is refused within
token_revocation_poll_s: each replica follows the revocations in Redis (storage.revocations).
Ownership of a specific object is the route's check against its data; `require_owner` gives the
same 403 shape.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from dataclasses import dataclass

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from flashmart.permissions import PERMISSIONS, allowed
from flashmart.serve.context import Context, ctx_of
from flashmart.serve.errors import Refused
from flashmart.storage.revocations import RevocationFollower
from flashmart.storage.users import (  # noqa: F401 - the guest token issuer, re-exported for routes
    InvalidToken,
    decode_access_token,
    issue_guest_order_token,
)

_bearer = HTTPBearer(auto_error=False, description="access token from POST /api/v1/auth/login")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="flashmart"'}


@dataclass(frozen=True)
class Principal:
    user_id: int
    role: str
    email: str

    def can(self, permission: str) -> bool:
        return allowed(self.role, permission)


def unauthenticated(
    message: str = "log in first: send Authorization: Bearer <access token>",
) -> Refused:
    return Refused("unauthenticated", message, headers=_CHALLENGE)


# A verified token's principal is kept per replica (bounded LRU), so a buyer's requests are not each
# an HMAC and a claims check (a checkout verified the same token twice: rate limit and route, ~5% of
# a replica's CPU). Same answers as decoding every time: expiry and revocation are checked on every
# use, after the cache. A refused token is never cached.
VERIFIED_TOKENS_MAX = 20_000


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    expires_s: int
    generation: int
    session_id: str | None


@functools.lru_cache(maxsize=VERIFIED_TOKENS_MAX)
def _verified(secret: str, token: str) -> _Verified:
    claims = decode_access_token(secret, token)
    principal = Principal(
        user_id=int(claims["sub"]), role=claims["role"], email=claims.get("email", "")
    )
    return _Verified(principal, claims["exp"], claims.get("gen", 0), claims.get("sid"))


# Revocations this replica knows of, per Redis (one per replica in production).
_followers: dict[str, RevocationFollower] = {}


def revocations(ctx: Context) -> RevocationFollower:
    key = ctx.settings.redis_url
    follower = _followers.get(key)
    if follower is None:
        follower = _followers[key] = RevocationFollower(
            ctx.settings.token_revocation_poll_s, ctx.settings.access_token_ttl_s
        )
    return follower


async def follow_revocations(ctx: Context) -> None:
    """Bring this replica's revocations up to date (a Redis read at most every poll interval)."""
    await revocations(ctx).refresh(ctx.redis)


def principal_from_token(ctx: Context, token: str) -> Principal:
    """The caller of a valid, unexpired, unrevoked access token (memory only: no I/O here; the async
    callers run follow_revocations first)."""
    try:
        verified = _verified(ctx.settings.jwt_secret, token)
        if verified.expires_s <= time.time():
            raise InvalidToken("the access token has expired; refresh it or log in again")
        follower = _followers.get(getattr(ctx.settings, "redis_url", ""))
        if follower is not None and follower.is_revoked(
            verified.principal.user_id, verified.generation, verified.session_id
        ):
            raise InvalidToken(
                "this session has ended (logged out or access changed); log in again"
            )
        principal = verified.principal
    except InvalidToken as exc:
        raise Refused(
            "unauthenticated",
            str(exc),
            headers={"WWW-Authenticate": 'Bearer realm="flashmart", error="invalid_token"'},
        ) from exc
    return principal


async def optional_principal(
    request: Request,
    creds: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> Principal | None:
    """None for an anonymous caller; a token that is present but invalid is still a 401 (a client
    that believes it is logged in must learn that it is not)."""
    if creds is None:
        if request.headers.get("authorization"):
            raise unauthenticated("the Authorization header must be 'Bearer <access token>'")
        return None
    ctx = ctx_of(request)
    await follow_revocations(ctx)
    return principal_from_token(ctx, creds.credentials)


async def authenticated(principal: Principal | None = Depends(optional_principal)) -> Principal:
    """Any logged-in user, whatever the role."""
    if principal is None:
        raise unauthenticated()
    return principal


def require(permission: str):
    """Dependency factory: the caller must be logged in and their role must hold `permission`."""
    assert permission in PERMISSIONS, (
        f"unknown permission {permission!r}: add it to flashmart/permissions.py"
    )

    async def _require(principal: Principal = Depends(authenticated)) -> Principal:
        if not allowed(principal.role, permission):
            raise Refused(
                "forbidden", f"your role ({principal.role}) may not do this (needs {permission})"
            )
        return principal

    _require.__name__ = f"require_{permission.replace('.', '_')}"
    _require.permission = permission  # read by tests/test_authz_matrix.py to derive the matrix
    return _require


def require_owner(
    principal: Principal,
    owner_id: int | None,
    *,
    staff: frozenset[str] = frozenset({"admin", "support"}),
    what: str = "this object",
) -> None:
    """403 unless the principal owns the object or has a staff role that may see everyone's.
    Routes that prefer not to reveal existence should answer 404 themselves instead."""
    if principal.role in staff or (owner_id is not None and owner_id == principal.user_id):
        return
    raise Refused("forbidden", f"{what} belongs to another account")


def client_ip(request: Request) -> str:
    """The caller's address. A request from the ingress (Serve's HAProxy, which the platform runs
    with `option forwardfor`; Settings.forwarded_for_trusted_cidrs) names its client in the last
    X-Forwarded-For value, the one the ingress appended: whatever a client writes there itself comes
    before it and is never used. Any other request's address is its socket peer's.
    FLASHMART_TRUST_FORWARDED_FOR=true believes the header from every peer (a front proxy that all
    traffic passes through)."""
    peer = request.client.host if request.client else "unknown"
    ctx = getattr(request.app.state, "ctx", None)
    if ctx is None:
        return peer
    settings = ctx.settings
    if settings.trust_forwarded_for or _is_ingress(
        peer, tuple(settings.forwarded_for_trusted_cidrs)
    ):
        values = request.headers.getlist("x-forwarded-for")
        last = ",".join(values).rsplit(",", 1)[-1].strip()
        if last:
            return last[:64]
    return peer


@functools.lru_cache(maxsize=1024)
def _is_ingress(peer: str, cidrs: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(c, strict=False) for c in cidrs)


# --- guest checkout -----------------------------------------------------------------------------------
# A guest (no account) gets, with their order, a token that opens that one order and nothing else.
# It is a signed JWT of its own kind ("guest_order"), so it is never accepted as an access token.


def guest_order_email(settings, token: str, order_id: int | str) -> str:
    """The guest's email when `token` opens `order_id`; 401 for a bad token, 403 for another order."""
    import jwt

    from flashmart.storage.users import JWT_ALGORITHM, JWT_AUDIENCE, JWT_ISSUER

    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[JWT_ALGORITHM],
            audience=JWT_AUDIENCE,
            issuer=JWT_ISSUER,
            options={"require": ["exp", "sub", "typ"]},
        )
    except jwt.PyJWTError as exc:
        raise unauthenticated("the order access token is not valid or has expired") from exc
    if claims.get("typ") != "guest_order":
        raise unauthenticated("the order access token is not valid")
    if claims["sub"] != f"order:{order_id}":
        raise Refused("forbidden", "this token opens another order")
    return claims["email"]


@dataclass(frozen=True)
class GuestOrder:
    """A caller holding the token of one guest order: it may read that order, nothing else."""

    order_id: str
    email: str


def order_reader(permission: str):
    """Dependency factory for a route on /orders/{order_id}: like require(permission), or a guest's
    order token (`?token=`, the link a guest checkout answers and the order emails carry) that opens
    that one order. A token, when given, is what is checked, login or not."""
    logged_in = require(permission)

    async def _reader(
        request: Request,
        order_id: str,
        token: str | None = Query(
            None,
            min_length=16,
            max_length=2000,
            description="a guest's order token (from the checkout answer)",
        ),
        principal: Principal | None = Depends(optional_principal),
    ) -> Principal | GuestOrder:
        if token is not None:
            return GuestOrder(
                order_id, guest_order_email(ctx_of(request).settings, token, order_id)
            )
        if principal is None:
            raise unauthenticated(
                "log in first (Authorization: Bearer <access token>), or open the link "
                "with the order token a guest checkout gave"
            )
        return await logged_in(principal)

    _reader.__name__ = f"order_reader_{permission.replace('.', '_')}"
    _reader.permission = permission  # the authz matrix reads it (401 without a login or token)
    return _reader
