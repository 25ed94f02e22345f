"""Signing in and out (customers and the admin), and the admin API to set a password."""

from __future__ import annotations

import hmac
import math

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from starter.auth import admin_only
from starter.errors import ApiError
from starter.web import security
from starter.web.i18n import Translator
from starter.web.pages import (
    PageContext,
    admin_epoch,
    check_csrf,
    current_user,
    db_of,
    language,
    render,
    safe_next,
    web_settings_of,
)

router = APIRouter()


def _home(user: security.WebUser) -> str:
    return "/admin" if user.is_admin else f"/app/a/{user.account_id}"


@router.get("/", include_in_schema=False)
async def root() -> Response:
    return RedirectResponse("/app", status_code=303)


@router.get("/login", include_in_schema=False)
async def login_page(request: Request) -> Response:
    user = await current_user(request)
    if user is not None:
        return RedirectResponse(safe_next(request.query_params.get("next"), _home(user)), 303)
    ctx = PageContext(request, None, Translator(language(request)))
    return render(ctx, "login.html", next=request.query_params.get("next", ""), email="")


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    form = await request.form()
    email = str(form.get("email", ""))[:320].strip()
    password = str(form.get("password", ""))[:1024]
    next_url = str(form.get("next", ""))
    ctx = PageContext(request, None, Translator(language(request)))

    def again(error: str, status: int, **values: object) -> Response:
        return render(
            ctx,
            "login.html",
            status_code=status,
            error=ctx.t(error, **values),
            next=next_url,
            email=email,
        )

    if not security.csrf_ok(request, str(form.get(security.CSRF_FIELD, ""))):
        return again("login.expired", 403)
    web = web_settings_of(request)
    db = db_of(request)
    throttle = security.Throttle(
        web.web_login_max_failures, web.web_login_max_failures_per_ip, web.web_login_window_seconds
    )
    ip = request.client.host if request.client else "unknown"
    if await run_in_threadpool(throttle.locked, db, email, ip):
        minutes = math.ceil(web.web_login_window_seconds / 60)
        return again("login.throttled", 429, minutes=minutes)

    user: security.WebUser | None = None
    epoch: int | str = 0
    if security.normalise_email(email) == security.normalise_email(web.admin_email):
        await run_in_threadpool(security.burn_time, password)
        if hmac.compare_digest(password.encode(), web.admin_password.encode()):
            user, epoch = security.WebUser("admin", web.admin_email), admin_epoch(web)
    else:
        found = await run_in_threadpool(security.find_login, db, email)
        if found is None:
            await run_in_threadpool(security.burn_time, password)
        elif await run_in_threadpool(security.verify_password, found.password_hash, password):
            user = security.WebUser("customer", found.email, found.account_id)
            epoch = found.session_epoch
            if security.needs_rehash(found.password_hash):
                await run_in_threadpool(security.rehash, db, found.account_id, password)
    if user is None:
        await run_in_threadpool(throttle.failed, db, email, ip)
        return again("login.failed", 401)
    await run_in_threadpool(throttle.succeeded, db, email)
    security.start_session(request, user, epoch)  # type: ignore[arg-type]
    return RedirectResponse(safe_next(next_url, _home(user)), status_code=303)


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    await check_csrf(request)
    security.end_session(request)
    return RedirectResponse("/login", status_code=303)


# --- admin API: a customer's web-app password ---------------------------------------------


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    password: str = Field(min_length=8, max_length=256)


@router.put(
    "/v1/accounts/{account_id}/password",
    status_code=204,
    dependencies=[admin_only],
    tags=["web app"],
    summary="Set a customer's web-app password",
)
async def set_password(account_id: str, body: PasswordIn, request: Request) -> Response:
    """The customer then signs in at ``/login`` with the account's email and this password.
    A new password signs the account out of every browser."""
    try:
        await run_in_threadpool(security.set_password, db_of(request), account_id, body.password)
    except LookupError as err:
        raise ApiError(404, "unknown_account", f"no account {account_id!r}") from err
    except ValueError as err:
        raise ApiError(409, "login_email_taken", str(err)) from err
    return Response(status_code=204)
