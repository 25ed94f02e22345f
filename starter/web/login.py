"""Signing in and out (customers and the admin), and the admin API to set a password."""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from overtime import mailer
from overtime.settings import Settings
from starter import customer_tokens
from starter.auth import admin_only
from starter.errors import ApiError
from starter.web import data, locale_memory, security, sessions
from starter.web.config import WebSettings
from starter.web.forms import FieldErrors
from starter.web.i18n import Translator
from starter.web.pages import (
    LANG_FROM_ACCOUNT,
    PageContext,
    admin_epoch,
    check_csrf,
    current_user,
    db_of,
    language,
    render,
    safe_next,
    settings_of,
    web_settings_of,
)

router = APIRouter()
log = logging.getLogger(__name__)


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


def throttle_of(request: Request) -> security.Throttle:
    web = web_settings_of(request)
    return security.Throttle(
        secret=web.web_session_secret,
        max_per_email=web.web_login_max_failures,
        max_per_ip=web.web_login_max_failures_per_ip,
        window_seconds=web.web_login_window_seconds,
        delay_after=web.web_login_delay_after_failures,
        delay_seconds=web.web_login_delay_seconds,
        delay_max_seconds=web.web_login_delay_max_seconds,
    )


def client_address(request: Request) -> str:
    # The peer, or what a proxy in Settings.trusted_proxies said (the proxy-headers
    # middleware rewrote request.client); X-Forwarded-For is never read here.
    return request.client.host if request.client else "unknown"


def log_failure(email: str, ip: str, reason: str, failures: int | None = None) -> None:
    log.warning(
        "web sign-in failed",
        extra={
            "event": "web_login_failed",
            "email_hash": security.email_digest(email),
            "email_masked": security.mask_email(email),
            "client": ip,
            "reason": reason,
            "failures": failures,
        },
    )


async def _verify(
    request: Request, email: str, password: str
) -> tuple[security.WebUser | None, int | str, str]:
    """(the user or None, the session epoch, why not). Unknown emails cost the same Argon2
    time as wrong passwords."""
    web = web_settings_of(request)
    db = db_of(request)
    if security.normalise_email(email) == security.normalise_email(web.admin_email):
        await run_in_threadpool(security.burn_time, password)
        if hmac.compare_digest(password.encode(), web.admin_password.encode()):
            return security.WebUser("admin", web.admin_email), admin_epoch(web), ""
        return None, 0, "wrong_password"
    found = await run_in_threadpool(security.find_login, db, email)
    if found is None:
        await run_in_threadpool(security.burn_time, password)
        return None, 0, "unknown_email"
    if not await run_in_threadpool(security.verify_password, found.password_hash, password):
        return None, 0, "wrong_password"
    if security.needs_rehash(found.password_hash):
        await run_in_threadpool(security.rehash, db, found.account_id, password)
    return security.WebUser("customer", found.email, found.account_id), found.session_epoch, ""


def _send_code(
    settings: Settings, web: WebSettings, db: str, user: security.WebUser, code: str
) -> None:
    """Blocking (the account lookup and SMTP, with the mailer's own timeout): run in a
    thread."""
    # The admin's code goes to the configured admin email; a customer's to the account's.
    locale, to = "en", web.admin_email
    if user.account_id is not None:
        account = data.account(db, user.account_id)
        if account is None:
            raise LookupError(user.account_id)
        locale, to = account.locale, account.email
    email = mailer.render(
        "login_code",
        locale,
        {
            "product_name": settings.product_name,
            "account_id": user.account_id or "admin",
            "code": code,
            "minutes": math.ceil(web.web_login_code_ttl_seconds / 60),
            "login_url": f"{settings.public_url}/login",
        },
    )
    mailer.send(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.mail_from,
        to=to,
        email=email,
        message_id=f"<login-code.{secrets.token_hex(8)}@overtime>",
        headers={"X-Overtime-Notice": "login_code"},
    )


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    form = await request.form()
    email = str(form.get("email", ""))[:320].strip()
    password = str(form.get("password", ""))[:1024]
    next_url = str(form.get("next", ""))
    ctx = PageContext(request, None, Translator(language(request)))

    def again(
        error: str, status: int, headers: dict[str, str] | None = None, **values: object
    ) -> Response:
        response = render(
            ctx,
            "login.html",
            status_code=status,
            error=ctx.t(error, **values),
            next=next_url,
            email=email,
        )
        response.headers.update(headers or {})
        return response

    def code_page(status: int = 200, error: str | None = None) -> Response:
        # A wrong code is the code field's error (aria-invalid, focus back on it).
        errors = FieldErrors()
        if error:
            errors.add("code", ctx.t(error))
        return render(
            ctx,
            "login.html",
            status_code=status,
            code_step=True,
            errors=errors,
            next=next_url,
            email="",
        )

    if not security.csrf_ok(request, str(form.get(security.CSRF_FIELD, ""))):
        return again("login.expired", 403)
    if "code" not in form:
        # An empty field is answered at the field, before anything is counted or slowed
        # (it guesses nothing).
        errors = FieldErrors()
        if not email:
            errors.add("email", ctx.t("forms.email_missing"))
        if not password:
            errors.add("password", ctx.t("forms.password_missing"))
        if errors:
            return render(
                ctx, "login.html", status_code=422, errors=errors, next=next_url, email=email
            )
    web = web_settings_of(request)
    db = db_of(request)
    throttle = throttle_of(request)
    ip = client_address(request)
    pending = request.session.get("pending")
    if "code" in form and isinstance(pending, dict):
        email = str(pending.get("email", ""))
    status = await run_in_threadpool(throttle.status, db, email, ip)
    if throttle.address_blocked(status):
        log_failure(email, ip, "address_throttled", status.email_failures)
        minutes = math.ceil(status.ip_retry_after / 60)
        return again(
            "login.throttled", 429, {"Retry-After": str(status.ip_retry_after)}, minutes=minutes
        )

    wait = throttle.delay(status)
    if wait:
        # In the event loop: a waiting attacker holds no thread. The code step waits too,
        # so guessing codes is no faster than guessing passwords.
        await asyncio.sleep(wait)
    if "code" in form:
        return await _code_step(request, form, pending, throttle, ip, code_page, again)

    user, epoch, reason = await _verify(request, email, password)
    code_required = throttle.code_required(status)
    if code_required:
        # The right password alone is not enough now. Whether it was right must not show:
        # right or wrong, the same code form (status, page, cookie), the same Argon2 time,
        # the same database work before the answer, and the attempt counts either way (so
        # the next answer's delay does not tell either). Only the session, server-side,
        # knows; a code after a wrong password always fails. The code is issued and mailed
        # after the answer (no SMTP round trip in it, and no 503 when mail is down).
        failures = await run_in_threadpool(throttle.failed, db, email, ip)
        if user is None:
            log_failure(email, ip, reason, failures)
        else:
            _start_code_mail(request, user, email, ip)
        request.session["pending"] = {
            "ok": user is not None,
            "kind": user.kind if user else None,
            "email": user.email if user else email,
            "account_id": user.account_id if user else None,
            "epoch": epoch,
            "until": time.time() + web.web_login_code_ttl_seconds,
        }
        return code_page()
    if user is None:
        failures = await run_in_threadpool(throttle.failed, db, email, ip)
        log_failure(email, ip, reason, failures)
        # Logged once, when this failure crossed the limit (not again for each later one).
        if status.email_failures < throttle.max_per_email <= failures:
            log.warning(
                "web sign-in now needs an emailed code",
                extra={
                    "event": "web_login_code_required",
                    "email_hash": security.email_digest(email),
                    "email_masked": security.mask_email(email),
                    "client": ip,
                    "failures": failures,
                },
            )
        return again("login.failed", 401)
    await run_in_threadpool(throttle.succeeded, db, email)
    security.start_session(request, user, epoch)
    await adopt_language(request, user)
    return RedirectResponse(safe_next(next_url, _home(user)), status_code=303)


async def adopt_language(request: Request, user: security.WebUser) -> None:
    """The session's language after sign-in: one chosen on the login page is stored on
    the account; otherwise the account's own (starter/web/locale_memory.py)."""
    if user.kind != "customer" or user.account_id is None:
        return
    lang = await run_in_threadpool(
        locale_memory.adopt, db_of(request), user.account_id, request.session.get("lang")
    )
    if lang and not request.session.get("lang"):
        request.session["lang"] = lang
        # Not chosen in this browser: forgotten at sign-out (pages.LANG_FROM_ACCOUNT).
        request.session[LANG_FROM_ACCOUNT] = True


# The code mails under way. The event loop holds its tasks only weakly: without a strong
# reference here a task could be garbage-collected before it has sent its mail.
_code_mails: set[asyncio.Task[None]] = set()


def _start_code_mail(request: Request, user: security.WebUser, email: str, ip: str) -> None:
    # The settings as this request saw them: the task outlives the request.
    task = asyncio.create_task(
        _issue_and_send_code(
            settings_of(request), web_settings_of(request), db_of(request), user, email, ip
        ),
        name="web-login-code-mail",
    )
    _code_mails.add(task)
    task.add_done_callback(_code_mails.discard)


async def pending_code_mails() -> None:
    """Wait until the code mails under way have been sent or have failed (tests,
    shutdown)."""
    while _code_mails:
        await asyncio.gather(*list(_code_mails), return_exceptions=True)


async def _issue_and_send_code(
    settings: Settings,
    web: WebSettings,
    db: str,
    user: security.WebUser,
    email: str,
    ip: str,
) -> None:
    """Issue and email a code (the right password was given), unless the login's resend
    limit or its cap holds it back (a code already sent still works). Mail goes out only
    after the right password, so wrong guesses can neither lock the owner out nor flood
    them. Runs off the request: nothing here may raise."""
    email_hash = security.email_digest(email)
    try:
        issued = await run_in_threadpool(
            security.issue_code,
            db,
            web.web_session_secret,
            email,
            web.web_login_code_ttl_seconds,
            web.web_login_code_resend_seconds,
            web.web_login_code_max_per_window,
            web.web_login_code_window_seconds,
        )
    except Exception:
        log.exception(
            "could not issue a sign-in code",
            extra={"event": "web_login_code_unsent", "email_hash": email_hash, "client": ip},
        )
        return
    if issued is None:
        log.info(
            "sign-in code held back (resend limit)",
            extra={"event": "web_login_code_held", "email_hash": email_hash, "client": ip},
        )
        return
    try:
        await run_in_threadpool(_send_code, settings, web, db, user, issued.code)
    except Exception as err:  # SMTP errors are OSErrors; an unknown account a LookupError
        # Nobody got this code: forget it, or the resend limit would hold back the next
        # attempt's mail and leave the owner without any code.
        try:
            await run_in_threadpool(security.void_code, db, issued)
        except Exception:
            log.exception("could not void an unsent sign-in code", extra={"client": ip})
        log.warning(
            "could not email a sign-in code",
            extra={
                "event": "web_login_code_unsent",
                "email_hash": email_hash,
                "client": ip,
                "error": type(err).__name__,
                "detail": str(err)[:200],
            },
        )
        return
    log.info(
        "sign-in code emailed",
        extra={"event": "web_login_code_sent", "email_hash": email_hash, "client": ip},
    )


# Checked instead of the login's codes after a wrong password: it has none, so the answer
# is a wrong code, after the same query (the owner's code loses no attempts to it).
_NO_CODE_EMAIL = "\0no code after a wrong password"


async def _code_step(
    request: Request,
    form: FormData,
    pending: object,
    throttle: security.Throttle,
    ip: str,
    code_page: Callable[..., Response],
    again: Callable[..., Response],
) -> Response:
    web = web_settings_of(request)
    db = db_of(request)
    if not isinstance(pending, dict) or float(pending.get("until", 0)) < time.time():
        request.session.pop("pending", None)
        return again("login.code_expired", 401)
    email = str(pending["email"])
    password_was_right = pending.get("ok") is True
    code = str(form.get("code", ""))[:32]
    right_code = await run_in_threadpool(
        security.check_code,
        db,
        web.web_session_secret,
        email if password_was_right else _NO_CODE_EMAIL,
        code,
        web.web_login_code_max_attempts,
    )
    if not (right_code and password_was_right):
        failures = await run_in_threadpool(throttle.failed, db, email, ip)
        log_failure(email, ip, "wrong_code", failures)
        return code_page(401, "login.code_wrong")
    await run_in_threadpool(throttle.succeeded, db, email)
    request.session.pop("pending", None)
    user = security.WebUser(str(pending["kind"]), email, pending.get("account_id"))
    security.start_session(request, user, pending.get("epoch", 0))
    await adopt_language(request, user)
    return RedirectResponse(safe_next(str(form.get("next", "")), _home(user)), status_code=303)


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    await check_csrf(request)
    from_account = request.session.get(LANG_FROM_ACCOUNT)
    security.end_session(request)  # a new id; the old row is deleted (copied cookies too)
    if from_account:
        # The account's language, not one chosen here: the signed-out browser keeps nothing.
        request.session.pop("lang", None)
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


class SessionsEnded(BaseModel):
    ended: int
    # The mobile app's sign-ins (customer API tokens) ended with them.
    api_sign_ins_ended: int = 0


@router.delete(
    "/v1/accounts/{account_id}/sessions",
    response_model=SessionsEnded,
    dependencies=[admin_only],
    tags=["web app"],
    summary="End every web-app session and mobile-app sign-in of a customer",
)
async def end_sessions(account_id: str, request: Request) -> SessionsEnded:
    """Signs the customer out of every browser at once (their cookies stop working); the
    password stays. The mobile app's tokens are revoked too. Answers how many web
    sessions and mobile-app sign-ins were ended."""
    db = db_of(request)
    if await run_in_threadpool(data.account, db, account_id) is None:
        raise ApiError(404, "unknown_account", f"no account {account_id!r}")
    ended = await run_in_threadpool(sessions.end_account_sessions, db, account_id)
    tokens = await run_in_threadpool(customer_tokens.revoke_account, db, account_id)
    log.info(
        "web sessions ended by the admin",
        extra={
            "event": "web_sessions_ended",
            "account_id": account_id,
            "ended": ended,
            "api_sign_ins_ended": tokens,
        },
    )
    return SessionsEnded(ended=ended, api_sign_ins_ended=tokens)
