"""Shared plumbing of the web pages: templates, who is signed in, CSRF, errors, headers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from overtime.catalog import TaxTerms, load_tax
from overtime.settings import Settings
from overtime.stripe_gateway import StripeGateway
from starter.services import AccountService
from starter.web import locale_memory, security
from starter.web.config import WebSettings
from starter.web.i18n import LANGUAGES, Translator, pick_language
from workflows.types import AccountWorkflowInput

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "overtime" / "templates" / "web"
STATIC_DIR = Path(__file__).resolve().parents[2] / "overtime" / "static"
HTMX = "htmx-2.0.11.min.js"

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class PageError(Exception):
    """An error page (404 for someone else's account, 403 for a customer on /admin)."""

    def __init__(self, status: int, kind: str) -> None:
        super().__init__(kind)
        self.status = status
        self.kind = kind


class CsrfFailed(Exception):
    pass


class Redirect(Exception):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def web_settings_of(request: Request) -> WebSettings:
    return request.app.state.web_settings


def service_of(request: Request) -> AccountService:
    return request.app.state.service


def db_of(request: Request) -> str:
    return settings_of(request).resolved_database_url()


def tax_of(request: Request) -> TaxTerms:
    """How the catalog's prices are meant (net or gross, the VAT rate); read once per file."""
    return load_tax(settings_of(request).plans_file)


def admin_epoch(web: WebSettings) -> str:
    """Changes with the admin's credentials, so changing them ends admin sessions."""
    return hashlib.sha256(f"{web.admin_email}\0{web.admin_password}".encode()).hexdigest()[:16]


# Set beside the session's "lang" when sign-in took it from the account (not chosen in
# this browser): signing out then forgets it, so a signed-out browser keeps no cookie.
LANG_FROM_ACCOUNT = "lang_from_account"


async def current_user(request: Request) -> security.WebUser | None:
    if request.session.get("kind") == "admin" and request.session.get("epoch") != admin_epoch(
        web_settings_of(request)
    ):
        security.end_session(request)
        return None
    user = await run_in_threadpool(security.session_user, request, db_of(request))
    wanted = request.query_params.get("lang")
    if (
        user is not None
        and user.kind == "customer"
        and user.account_id is not None
        and wanted in LANGUAGES
        and wanted != request.session.get("lang")
    ):
        # The customer switched the page language: remember it for the account
        # (later sign-ins, error pages and emails follow it; starter/web/locale_memory.py).
        await run_in_threadpool(locale_memory.remember, db_of(request), user.account_id, wanted)
        request.session["lang"] = wanted
        request.session.pop(LANG_FROM_ACCOUNT, None)
    return user


def language(request: Request, account_locale: str | None = None) -> str:
    wanted = request.query_params.get("lang")
    if wanted in ("de", "en"):
        request.session["lang"] = wanted
        request.session.pop(LANG_FROM_ACCOUNT, None)
    return pick_language(request.session.get("lang"), account_locale)


def safe_next(target: str | None, default: str) -> str:
    """Only paths on this site (no scheme, no host, no //evil.example)."""
    if not target:
        return default
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target  # browsers read /\evil.example as //evil.example
    ):
        return default
    return target


def login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"/login?next={quote(target, safe='')}"
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


async def check_csrf(request: Request) -> None:
    given = request.headers.get(security.CSRF_HEADER)
    if given is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(security.CSRF_FIELD)
            given = value if isinstance(value, str) else None
    if not security.csrf_ok(request, given):
        raise CsrfFailed()


def flash(request: Request, key: str, level: str = "ok") -> None:
    request.session["flash"] = [key, level]


def pop_flash(request: Request) -> tuple[str, str] | None:
    value = request.session.pop("flash", None)
    return (value[0], value[1]) if value else None


def stripe_origins(gateway: StripeGateway) -> tuple[list[str], list[str], list[str]]:
    """(script, frame, connect) sources for the Content-Security-Policy."""
    url = urlsplit(gateway.stripe_js_url)
    origin = f"{url.scheme}://{url.netloc}"
    if url.netloc == "js.stripe.com":
        return (
            ["https://js.stripe.com", "https://*.js.stripe.com"],
            ["https://js.stripe.com", "https://*.js.stripe.com", "https://hooks.stripe.com"],
            ["https://api.stripe.com"],
        )
    return [origin], [origin], [origin]


_Response = TypeVar("_Response", bound=Response)


def security_headers(request: Request, response: _Response) -> _Response:
    scripts, frames, connects = stripe_origins(request.app.state.payments.gateway)
    policy = "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' {' '.join(scripts)}",
            f"frame-src {' '.join(frames)}",
            f"connect-src 'self' {' '.join(connects)}",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: https://*.stripe.com",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
    response.headers["Content-Security-Policy"] = policy
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response


@dataclass
class PageContext:
    """What every page needs: the user, the language and (for customers) the account."""

    request: Request
    user: security.WebUser | None
    t: Translator
    account: AccountWorkflowInput | None = None

    @property
    def zone(self) -> ZoneInfo:
        if self.account is None:
            return ZoneInfo(settings_of(self.request).default_timezone)
        return ZoneInfo(self.account.profile.timezone)


def render(ctx: PageContext, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    request = ctx.request
    settings = settings_of(request)
    response = templates.TemplateResponse(
        request,
        template,
        {
            "t": ctx.t,
            "lang": ctx.t.lang,
            "user": ctx.user,
            "account": ctx.account,
            "zone": ctx.zone,
            "csrf_token": security.csrf_token(request),
            "product": settings.product_name,
            "htmx": HTMX,
            "flash": pop_flash(request),
            # Every price a page shows carries it: "zzgl. 19 % MwSt." / "incl. 19% VAT".
            "tax_note": tax_of(request).note(ctx.t.lang),
            # An invoice's total is what was charged, VAT included, whatever the catalog says.
            "tax_note_gross": replace(tax_of(request), prices="gross").note(ctx.t.lang),
            **values,
        },
        status_code=status_code,
    )
    return security_headers(request, response)


def wants_web_page(request: Request) -> bool:
    """A browser asking for a web-app page (not an API client): gets HTML errors."""
    return request.url.path.startswith(("/app", "/admin")) and "text/html" in request.headers.get(
        "accept", ""
    )


async def error_page(request: Request, status: int, kind: str) -> HTMLResponse:
    user = await current_user(request)
    ctx = PageContext(request, user, Translator(language(request)))
    return render(ctx, "error.html", status_code=status, kind=kind)
