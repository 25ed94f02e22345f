"""The web app (customers: ``/app``) and the admin console (``/admin``) on the API's service.

Server-rendered Jinja2 pages (``overtime/templates/web``), htmx for live panels, Stripe.js
for payment details; every page calls the same services as the HTTP API
(``app.state.service`` / ``app.state.payments``), never the API over HTTP.
``install_web(app)`` adds the (server-side) session middleware, the static files and the routes.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from starter.web import admin, alerts, customer, login, plan, prices
from starter.web.config import DEV_SESSION_SECRET, WebSettings
from starter.web.pages import (
    STATIC_DIR,
    CsrfFailed,
    LoginRequired,
    PageError,
    Redirect,
    error_page,
    login_redirect,
)
from starter.web.sessions import SESSION_COOKIE, ServerSessionMiddleware

__all__ = ["SESSION_COOKIE", "install_web"]

log = logging.getLogger(__name__)


def install_web(app: FastAPI, web_settings: WebSettings | None = None) -> None:
    web = web_settings or WebSettings()
    app.state.web_settings = web
    if web.web_https_only and web.web_session_secret == DEV_SESSION_SECRET:
        log.warning("OVERTIME_WEB_SESSION_SECRET is the public dev value; set your own")
    # Reads app.state.settings / app.state.web_settings per request (tests change them).
    app.add_middleware(ServerSessionMiddleware, cookie_name=SESSION_COOKIE)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(login.router)
    app.include_router(customer.router)
    app.include_router(admin.router)
    app.include_router(prices.router)
    app.include_router(plan.router)
    app.include_router(alerts.router)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _: LoginRequired) -> Response:
        return login_redirect(request)

    @app.exception_handler(Redirect)
    async def _redirect(_: Request, err: Redirect) -> Response:
        return RedirectResponse(err.location, status_code=303)

    @app.exception_handler(PageError)
    async def _page_error(request: Request, err: PageError) -> Response:
        return await error_page(request, err.status, err.kind)

    @app.exception_handler(CsrfFailed)
    async def _csrf_failed(request: Request, _: CsrfFailed) -> Response:
        return await error_page(request, 403, "csrf")
