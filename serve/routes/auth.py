"""Accounts and sessions: register, login, refresh (rotating), logout, me.

Every authentication event is written to the audit log in the same transaction as its effect.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from flashmart.serve.auth import Principal, authenticated, client_ip, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused
from flashmart.serve.ratelimit import check, rate_limit
from flashmart.storage import revocations, users
from flashmart.storage.audit import audit

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

Password = Annotated[
    str, Field(min_length=users.PASSWORD_MIN_CHARS, max_length=users.PASSWORD_MAX_CHARS)
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
RefreshToken = Annotated[str, Field(min_length=16, max_length=200)]


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailStr = Field(max_length=254)
    password: Password
    name: Name


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailStr = Field(max_length=254)
    password: Annotated[str, Field(min_length=1, max_length=users.PASSWORD_MAX_CHARS)]
    device_token: str | None = Field(
        None,
        min_length=16,
        max_length=2000,
        description="the device_token of this device's last login to this account",
    )


class RefreshIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: RefreshToken


class UserOut(BaseModel):
    id: int
    email: str
    name: str
    role: Literal["customer", "seller", "admin", "support", "courier"]


class MergedLine(BaseModel):
    sku: str
    quantity: int


class RefusedLine(MergedLine):
    reason: str
    message: str


class CartMergeOut(BaseModel):
    guest_cart_id: str
    merged: bool = Field(description="false: nothing was taken from the guest cart (see message)")
    moved: list[MergedLine] = Field(default_factory=list, description="units now held in your cart")
    refused: list[RefusedLine] = Field(
        default_factory=list, description="units left behind, with the reason"
    )
    coupons_dropped: list[str] = Field(
        default_factory=list, description="coupons you have already used up"
    )
    message: str | None = None


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")
    user: UserOut
    cart_merge: CartMergeOut | None = Field(
        None, description="login with X-Cart-Id: what joined your cart"
    )
    device_token: str | None = Field(
        None,
        description="keep it and send it with this device's next login: someone guessing this "
        "account's password from elsewhere then cannot lock you out",
    )


def _user_out(row: dict) -> UserOut:
    return UserOut(id=row["id"], email=row["email"], name=row["name"], role=row["role"])


def _access_token(ctx: Context, user: dict, family_id) -> str:
    s = ctx.settings
    return users.issue_access_token(
        s.jwt_secret,
        s.access_token_ttl_s,
        user["id"],
        user["role"],
        user["email"],
        generation=user["token_generation"],
        session_id=str(family_id),
    )


async def _tokens(ctx: Context, conn, user: dict) -> tuple[str, str]:
    family_id = uuid.uuid4()
    refresh = await users.issue_refresh_token_async(
        conn, user["id"], ctx.settings.refresh_token_ttl_s, family_id
    )
    return _access_token(ctx, user, family_id), refresh


class RegisteredOut(BaseModel):
    email: str
    message: str


REGISTERED = "registered: log in with this email and password"


@router.post(
    "/register",
    status_code=201,
    response_model=RegisteredOut,
    dependencies=[Depends(rate_limit("register"))],
    responses={429: {"description": "rate limited"}},
)
async def register(
    body: RegisterIn, request: Request, ctx: Context = Depends(get_ctx)
) -> RegisteredOut:
    """Create a customer account. The answer is the same whether or not the email already has an
    account (nobody learns who is a customer here); only the account's owner can then log in.
    Staff accounts are created by an admin (`flashmart user create`, `POST /api/v1/users`)."""
    password_hash = await asyncio.to_thread(
        users.hash_password, body.password
    )  # argon2 is CPU-bound, and paid for an existing email too: the same time either way
    ip = client_ip(request)
    async with ctx.db.connection() as conn:
        row = await users.insert_user_async(conn, body.email, password_hash, body.name, "customer")
        if row is None:
            await audit(
                conn,
                None,
                "auth.register_existing",
                "user",
                None,
                {"email": users.normalize_email(body.email)},
                ip,
            )
        else:
            await audit(
                conn, row["id"], "auth.register", "user", row["id"], {"role": "customer"}, ip
            )
    return RegisteredOut(email=users.normalize_email(body.email), message=REGISTERED)


@router.post(
    "/login",
    response_model=TokensOut,
    dependencies=[Depends(rate_limit("login"))],
    responses={
        401: {"description": "wrong email or password"},
        429: {"description": "rate limited"},
    },
)
async def login(
    body: LoginIn,
    request: Request,
    ctx: Context = Depends(get_ctx),
    x_cart_id: str | None = Header(None, description="the guest cart to merge into the account's"),
) -> TokensOut:
    """A guest who logs in sends its cart id (X-Cart-Id, as for every cart call): the guest cart joins
    the account's cart, and `cart_merge` says what moved and what did not (and why)."""
    from flashmart.serve.routes.cart import GUEST_ID

    if x_cart_id is not None and not GUEST_ID.match(
        x_cart_id
    ):  # before the password: nothing done yet
        raise Refused("bad_request", "X-Cart-Id must be a guest cart id as returned by this API")
    email = users.normalize_email(body.email)
    ip = client_ip(request)
    await _check_login_buckets(ctx, email, ip, body.device_token)
    async with ctx.db.connection() as conn:
        row = await users.find_by_email_async(conn, email)
    ok = await asyncio.to_thread(
        users.verify_password, row["password_hash"] if row else None, body.password
    )
    disabled = ok and row["disabled_at"] is not None
    async with ctx.db.connection() as conn:
        if disabled:
            await audit(conn, row["id"], "auth.login_disabled", "user", row["id"], {}, ip)
        elif not ok:
            await audit(
                conn,
                row["id"] if row else None,
                "auth.login_failed",
                "user",
                row["id"] if row else None,
                {"email": email},
                ip,
            )
        else:
            access, refresh = await _tokens(ctx, conn, row)
            await audit(conn, row["id"], "auth.login", "user", row["id"], {}, ip)
    if not ok:  # raised after the block, so the failure's audit record commits
        raise Refused("unauthenticated", "wrong email or password")
    if disabled:  # only said to whoever knows the password
        raise Refused("forbidden", "this account is disabled; contact support")
    merged = await _merge_guest_cart(ctx, x_cart_id, row) if x_cart_id is not None else None
    return TokensOut(
        access_token=access,
        refresh_token=refresh,
        expires_in=ctx.settings.access_token_ttl_s,
        user=_user_out(row),
        cart_merge=merged,
        device_token=users.issue_device_token(
            ctx.settings.jwt_secret, ctx.settings.device_token_ttl_s, row["id"], email
        ),
    )


async def _check_login_buckets(ctx: Context, email: str, ip: str, device_token: str | None) -> None:
    """Password guessing costs the guesser: one address gets a few tries at an account
    (login.account_ip); all addresses together a few more (login.account), which a botnet can
    exhaust - but not for a device the owner logged in from before, which has its own bucket."""
    device = device_token and users.device_token_id(ctx.settings.jwt_secret, device_token, email)
    if device:
        await check(ctx, ("login.device", device))
    else:
        await check(ctx, ("login.account_ip", f"{email} {ip}"), ("login.account", email))


async def _merge_guest_cart(ctx: Context, guest_cart_id: str, user: dict) -> CartMergeOut:
    """The login stands whatever happens to the cart: a merge that cannot be done is said, not raised."""
    from flashmart.permissions import allowed
    from flashmart.serve.routes.cart import merge_guest_cart

    if not allowed(user["role"], "cart.use"):
        return CartMergeOut(
            guest_cart_id=guest_cart_id,
            merged=False,
            message=f"role {user['role']} has no cart: the guest cart was left as it is",
        )
    try:
        result = await merge_guest_cart(ctx, guest_cart_id, user["id"])
    except Exception as exc:
        return CartMergeOut(
            guest_cart_id=guest_cart_id,
            merged=False,
            message=f"the guest cart could not be merged ({type(exc).__name__}); "
            "GET /api/v1/cart shows what your cart holds",
        )
    if "refused" in result:
        return CartMergeOut(guest_cart_id=guest_cart_id, merged=False, message=result["message"])
    return CartMergeOut(guest_cart_id=guest_cart_id, merged=True, **result["merge"])


@router.post(
    "/refresh",
    response_model=TokensOut,
    dependencies=[Depends(rate_limit("refresh"))],
    responses={401: {"description": "unknown, expired, revoked or reused refresh token"}},
)
async def refresh(body: RefreshIn, request: Request, ctx: Context = Depends(get_ctx)) -> TokensOut:
    """Exchange a refresh token for a new pair; the presented token stops working. Presenting an
    already-used token again ends the whole session (both holders must log in again)."""
    ip = client_ip(request)
    async with ctx.db.connection() as conn:
        result = await users.rotate_refresh_token_async(
            conn, body.refresh_token, ctx.settings.refresh_token_ttl_s
        )
        if isinstance(result, users.RefreshRefused):
            if result.reason == "reused":
                await audit(
                    conn,
                    result.user_id,
                    "auth.refresh_reused",
                    "session",
                    result.family_id,
                    {"revoked": "family"},
                    ip,
                )
            elif result.reason == "expired":
                await audit(
                    conn,
                    result.user_id,
                    "auth.refresh_expired",
                    "session",
                    result.family_id,
                    {},
                    ip,
                )
        else:
            user = result.user
            access = _access_token(ctx, user, result.family_id)
            await audit(conn, user["id"], "auth.refresh", "session", result.family_id, {}, ip)
    if isinstance(result, users.RefreshRefused):
        messages = {
            "reused": "this refresh token was already used; the session is revoked, log in again",
            "expired": "the refresh token has expired; log in again",
            "unknown": "the refresh token is not valid; log in again",
            "disabled": "this account is disabled; contact support",
        }
        raise Refused("unauthenticated", messages[result.reason])
    return TokensOut(
        access_token=access,
        refresh_token=result.refresh_token,
        expires_in=ctx.settings.access_token_ttl_s,
        user=_user_out(user),
    )


@router.post(
    "/logout",
    status_code=204,
    response_class=Response,
    dependencies=[Depends(rate_limit("refresh"))],
)
async def logout(body: RefreshIn, request: Request, ctx: Context = Depends(get_ctx)) -> Response:
    """End the session the refresh token belongs to: its refresh tokens at once, its access tokens
    within token_revocation_poll_s on every replica. Unknown tokens are accepted silently
    (idempotent)."""
    async with ctx.db.connection() as conn:
        row = await users.revoke_refresh_token_async(conn, body.refresh_token)
        if row is not None:
            await audit(
                conn,
                row["user_id"],
                "auth.logout",
                "session",
                row["family_id"],
                {},
                client_ip(request),
            )
    if row is not None:  # after the commit: a replica that reads it finds the session ended
        await revocations.publish(
            ctx.redis, ctx.settings.access_token_ttl_s, sid=str(row["family_id"])
        )
    return Response(status_code=204)


@router.get("/me", response_model=UserOut)
async def me(
    principal: Principal = Depends(authenticated), ctx: Context = Depends(get_ctx)
) -> UserOut:
    async with ctx.db.connection() as conn:
        row = await users.find_by_id_async(conn, principal.user_id)
    if row is None:
        raise Refused("unauthenticated", "this account no longer exists")
    return _user_out(row)


# --- audit log (read) ---------------------------------------------------------------------------------

audit_router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class AuditOut(BaseModel):
    id: int
    at: str
    actor_id: int | None
    action: str
    object_type: str
    object_id: str | None
    details: dict
    ip: str | None


@audit_router.get("", response_model=list[AuditOut])
async def read_audit(
    ctx: Context = Depends(get_ctx),
    _: Principal = Depends(require("audit.read")),
    actor_id: int | None = Query(None, ge=1, le=2**62),
    object_type: str | None = Query(None, min_length=1, max_length=100),
    object_id: str | None = Query(None, min_length=1, max_length=200),
    limit: int = Query(100, ge=1, le=1000),
) -> list[AuditOut]:
    """Newest first: who did what to which object (admins and support)."""
    from flashmart.storage.audit import recent

    async with ctx.db.connection() as conn:
        rows = await recent(
            conn, actor_id=actor_id, object_type=object_type, object_id=object_id, limit=limit
        )
    return [AuditOut(**{**r, "at": r["at"].isoformat()}) for r in rows]


# --- accounts (admin) ---------------------------------------------------------------------------------

users_router = APIRouter(prefix="/api/v1/users", tags=["users"])
Role = Literal["customer", "seller", "admin", "support", "courier"]


class StaffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailStr = Field(max_length=254)
    password: Password
    name: Name
    role: Role


class AccountPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    disabled: bool | None = Field(
        None, description="true: no login, no refresh, every access token refused within seconds"
    )


class AccountOut(UserOut):
    disabled: bool


def _account_out(row: dict) -> AccountOut:
    return AccountOut(**_user_out(row).model_dump(), disabled=row["disabled_at"] is not None)


@users_router.post(
    "",
    status_code=201,
    response_model=AccountOut,
    responses={409: {"description": "email already registered"}},
)
async def create_account(
    body: StaffIn,
    request: Request,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("user.admin")),
) -> AccountOut:
    """Create an account of any role (sellers, support, couriers, admins); audited with its creator."""
    password_hash = await asyncio.to_thread(users.hash_password, body.password)
    async with ctx.db.connection() as conn:
        row = await users.insert_user_async(conn, body.email, password_hash, body.name, body.role)
        if row is None:
            raise Refused("conflict", "an account with this email already exists")
        await audit(
            conn,
            principal.user_id,
            "user.create",
            "user",
            row["id"],
            {"role": body.role, "email": row["email"]},
            client_ip(request),
        )
    return _account_out(row)


@users_router.patch("/{user_id}", response_model=AccountOut)
async def update_account(
    body: AccountPatch,
    request: Request,
    user_id: int = Path(ge=1, le=2**62),
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("user.admin")),
) -> AccountOut:
    """Change an account's role or disable it. Its access tokens issued before stop working within
    token_revocation_poll_s on every replica (the new role is in the next refreshed token)."""
    if body.role is None and body.disabled is None:
        raise Refused("invalid", "give role and/or disabled")
    if user_id == principal.user_id:
        raise Refused("forbidden", "an admin cannot change or disable their own account")
    async with ctx.db.connection() as conn:
        before = await users.find_by_id_async(conn, user_id)
        if before is None:
            raise Refused("not_found", f"no account {user_id}")
        row = await users.update_account_async(
            conn, user_id, role=body.role, disabled=body.disabled
        )
        await audit(
            conn,
            principal.user_id,
            "user.update",
            "user",
            user_id,
            {
                "role": [before["role"], row["role"]],
                "disabled": [before["disabled_at"] is not None, row["disabled_at"] is not None],
            },
            client_ip(request),
        )
    await revocations.publish(
        ctx.redis, ctx.settings.access_token_ttl_s, uid=user_id, gen=row["token_generation"]
    )
    return _account_out(row)
