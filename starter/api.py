"""The HTTP API: telephony, admin and health endpoints (OpenAPI at /openapi.json).

Run it with ``uvicorn starter.api:app_from_env --factory`` (``make run`` does). Routes are
thin: auth, parse, one call into :mod:`starter.services`, shape the answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette._exception_handler import wrap_app_handling_exceptions
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client
from temporalio.runtime import Runtime

from billing.rules import ExtraMinutesSettings
from overtime.db import as_utc, init_db
from overtime.observability import configure_logging, free_port, metrics_runtime
from overtime.payments import gateway_for
from overtime.settings import Settings, get_settings
from overtime.temporal import connect
from starter import schemas
from starter.admission import Admission
from starter.auth import admin_only, bearer_token, is_static_token, telephony_only
from starter.body_limit import BodySizeLimit
from starter.codec_routes import router as codec_router
from starter.customer_api import install_customer_api
from starter.dispatcher import AccountDispatcher
from starter.docs_routes import install_docs
from starter.edge import install_edge
from starter.errors import ApiError
from starter.health import install_health
from starter.input_guard import InputGuard
from starter.payment_routes import router as payment_router
from starter.payments import PaymentService
from starter.report_routes import router as report_router
from starter.services import AccountService, clean_recipients
from starter.web import install_web
from starter.web.login import pending_code_mails
from starter.web.pages import error_page, wants_web_page
from workflows.types import AccountSnapshot

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": schemas.ErrorOut} for status in (401, 403, 404, 409, 422)
}
ERROR_RESPONSES[503] = {
    "model": schemas.ErrorOut,
    "description": (
        "`unavailable`: the account's workflow did not answer in time (Temporal or the "
        "worker down, the account busy); retry after `Retry-After` seconds. Telephony: an "
        "authorisation answered 503 recorded nothing; a usage report may or may not have "
        "been recorded and must be retried until 200 (it is counted once). Retries send "
        "the same `request_id`. `overloaded`: this API process (or this account) has as "
        "many telephony requests waiting as it admits; answered at once, before anything "
        "reached the workflow, so nothing was recorded (an authorisation reserved "
        "nothing, a usage report must be retried). Retry after `Retry-After` seconds, "
        "with jitter, the same `request_id`; another API instance may answer sooner."
    ),
    "headers": {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer"},
        }
    },
}


# Async: a plain ``def`` dependency would take a thread-pool hop on every request.
async def service_of(request: Request) -> AccountService:
    return request.app.state.service


Service = Annotated[AccountService, Depends(service_of)]

# The telephony backend's endpoints: matched before every other route (_telephony_first).
TELEPHONY_PATHS = ("/v1/calls/authorize", "/v1/calls/usage")


def create_app(
    settings: Settings, client: Client | None = None, metrics_port: int | None = None
) -> FastAPI:
    """The API for ``settings``.

    Without ``client`` it connects itself, through a Temporal runtime that exports
    Prometheus metrics on a private loopback port, which ``GET /metrics`` serves. Tests
    pass a shared ``client`` (and the ``metrics_port`` of its runtime, if it has one).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        init_db(settings.resolved_database_url())
        temporal = client
        exporter_port = metrics_port
        if temporal is None:
            exporter_port = exporter_port or free_port()
            temporal = await connect(settings, metrics_runtime(exporter_port))
        runtime = temporal.service_client.config.runtime or Runtime.default()
        app.state.meter = runtime.metric_meter
        app.state.metrics_url = (
            f"http://127.0.0.1:{exporter_port}/metrics" if exporter_port else None
        )
        dispatcher = AccountDispatcher(
            temporal,
            settings.task_queue,
            max_in_flight=settings.dispatch_max_in_flight,
            max_batch=settings.dispatch_max_batch,
            deadline_seconds=settings.dispatch_deadline_seconds,
            telephony_timeout_seconds=settings.telephony_timeout_seconds,
        )
        service = AccountService(settings, dispatcher, app.state.meter)
        await run_in_threadpool(service.sync_plans)
        app.state.payments = PaymentService(
            service, gateway_for(settings), temporal, settings.stripe_webhook_secret
        )
        app.state.temporal = temporal
        app.state.dispatcher = dispatcher
        app.state.service = service
        yield
        # Sign-in code mails still under way (sent after their answer) go out before the
        # process ends; bounded by the mailer's own SMTP timeout.
        await pending_code_mails()
        await dispatcher.aclose()

    app = FastAPI(
        title="Overtime",
        version="1.0.0",
        description="Pay-as-you-go extra minutes with hard spending limits.",
        lifespan=lifespan,
        # Served from our own assets instead (starter/docs_routes.py): /docs works offline.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    # Telephony requests in flight, bounded per process and per account (starter/admission.py).
    app.state.admission = Admission.from_settings(settings)
    _install_error_handlers(app)
    app.include_router(payment_router)
    app.include_router(codec_router)
    app.include_router(report_router)
    install_docs(app)  # /docs and /redoc without a CDN
    install_web(app)  # the web app (/app, /admin, /login), its session and static files
    install_customer_api(app)  # the mobile app: /v1/auth/*, /v1/me/* (read-only)
    # Inside the input guard (which has checked and buffered the body): the two telephony
    # routes without FastAPI's per-request machinery, anything unusual handed on to them.
    app.add_middleware(TelephonyFastPath, api=app)
    # Inside the size limit: NUL bytes, invalid UTF-8, duplicate JSON keys -> 422.
    app.add_middleware(InputGuard)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        timeout_seconds=settings.http_body_timeout_seconds,  # a dribbled body: 408
    )
    # Outermost: the truthful client address (trusted proxies only), the Host check,
    # and CORS for the Temporal Web UI on /codec only (starter/edge.py).
    install_edge(app, settings)

    admin, telephony = admin_only, telephony_only

    install_health(app, settings)  # /healthz (readiness) and /livez (starter/health.py)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> PlainTextResponse:
        """Prometheus: the Temporal SDK's runtime metrics and Overtime's own."""
        url = request.app.state.metrics_url
        if url is None:
            raise ApiError(404, "not_found", "this process exports no metrics")
        async with httpx.AsyncClient(timeout=5) as http:
            exported = await http.get(url)
        return PlainTextResponse(exported.text, media_type="text/plain; version=0.0.4")

    @app.get("/v1/plans", response_model=list[schemas.PlanOut])
    async def plans(service: Service) -> list[schemas.PlanOut]:
        return [schemas.PlanOut(**vars(terms)) for terms in service.catalog.values()]

    @app.post(
        "/v1/accounts",
        status_code=201,
        response_model=schemas.AccountOut,
        dependencies=[admin],
        responses=ERROR_RESPONSES,
    )
    async def create_account(body: schemas.AccountIn, service: Service) -> schemas.AccountOut:
        account = await service.create_account(
            body.account_id, str(body.email), body.plan, body.locale, body.timezone
        )
        return schemas.AccountOut(
            account_id=account.account_id,
            email=account.email,
            plan=account.plan,
            locale=account.locale,
            timezone=account.timezone,
            created_at=as_utc(account.created_at).isoformat(),
        )

    @app.put(
        "/v1/accounts/{account_id}/extra-minutes",
        response_model=schemas.ExtraMinutesOut,
        dependencies=[admin],
        responses=ERROR_RESPONSES,
    )
    async def put_extra_minutes(
        account_id: str, body: schemas.ExtraMinutesIn, service: Service
    ) -> schemas.ExtraMinutesOut:
        snapshot = await service.change_extra_minutes(
            account_id,
            ExtraMinutesSettings(body.enabled, body.limit_cents, body.limit_minutes),
            actor="admin",
        )
        return _extra_minutes_out(snapshot)

    @app.put(
        "/v1/accounts/{account_id}/plan",
        response_model=schemas.StateOut,
        dependencies=[admin],
        responses=ERROR_RESPONSES,
    )
    async def put_plan(account_id: str, body: schemas.PlanIn, service: Service) -> schemas.StateOut:
        """Move the account to another plan at once (see README "Plan changes")."""
        snapshot = await service.change_plan(
            account_id, body.plan, actor="admin", change_id=body.change_id, reason=body.reason
        )
        start_input = await service.load(account_id)
        return state_out(snapshot, ZoneInfo(start_input.profile.timezone))

    @app.put(
        "/v1/accounts/{account_id}/alerts",
        response_model=schemas.AlertsOut,
        dependencies=[admin],
        responses=ERROR_RESPONSES,
    )
    async def put_alerts(
        account_id: str, body: schemas.AlertsIn, service: Service
    ) -> schemas.AlertsOut:
        # Both checked before anything is stored: a refused address or threshold changes
        # nothing. The recipients are the database's alone (read when a notice is sent).
        wanted = clean_recipients(body.recipients) if body.recipients is not None else None
        snapshot = await service.change_alerts(
            account_id,
            body.thresholds,
            actor="admin",
            change_id=body.change_id,
            reason=body.reason,
        )
        if wanted is not None:
            recipients = await service.set_alert_recipients(account_id, wanted)
        else:
            recipients = await service.alert_recipients(account_id)
        return schemas.AlertsOut(thresholds=snapshot.alert_percents, recipients=recipients)

    @app.get(
        "/v1/accounts/{account_id}/state",
        response_model=schemas.StateOut,
        dependencies=[admin],
        responses=ERROR_RESPONSES,
    )
    async def account_state(account_id: str, service: Service) -> schemas.StateOut:
        start_input = await service.load(account_id)
        snapshot = await service.snapshot(account_id)
        return state_out(snapshot, ZoneInfo(start_input.profile.timezone))

    @app.get(
        "/v1/accounts/{account_id}/notifications",
        response_model=list[schemas.NotificationOut],
        dependencies=[admin],
        responses=ERROR_RESPONSES,
    )
    async def notifications(account_id: str, service: Service) -> list[schemas.NotificationOut]:
        start_input = await service.load(account_id)
        zone = ZoneInfo(start_input.profile.timezone)
        return [
            schemas.NotificationOut(
                kind=row.kind,
                to=row.to,
                sent_at=as_utc(row.sent_at).astimezone(zone).isoformat(),
                period_start=as_utc(row.period_start).astimezone(zone).isoformat(),
                status=row.status,
                error=row.error,
            )
            for row in await service.notifications(account_id)
        ]

    @app.post(
        "/v1/calls/authorize",
        response_model=schemas.AuthorizeOut,
        response_model_exclude_none=True,
        dependencies=[telephony],
        responses=ERROR_RESPONSES,
    )
    async def authorize(body: schemas.AuthorizeIn, request: Request) -> schemas.AuthorizeOut:
        # Usually answered by TelephonyFastPath before FastAPI sees it; the same function.
        return await answer_authorize(request.app.state, body)

    @app.post(
        "/v1/calls/usage",
        response_model=schemas.UsageOut,
        dependencies=[telephony],
        responses=ERROR_RESPONSES,
    )
    async def usage(body: schemas.UsageIn, request: Request) -> schemas.UsageOut:
        return await answer_usage(request.app.state, body)

    _telephony_first(app)
    return app


# --- the telephony routes -------------------------------------------------------------------


async def answer_authorize(state: State, body: schemas.AuthorizeIn) -> schemas.AuthorizeOut:
    """``POST /v1/calls/authorize``'s answer (the route's and TelephonyFastPath's)."""
    service: AccountService = state.service
    # Else 503 overloaded, before anything is queued.
    with state.admission.admit(body.account_id, "authorize", getattr(state, "meter", None)):
        result = await service.authorize(body.account_id, body.call_id, body.request_id)
    if result.allowed:
        return schemas.AuthorizeOut(allowed=True, granted_seconds=result.granted_seconds)
    # The workflow's reasons are the model's literals (a str in its dataclass); validated.
    return schemas.AuthorizeOut(allowed=False, reason=result.reason)  # type: ignore[arg-type]


async def answer_usage(state: State, body: schemas.UsageIn) -> schemas.UsageOut:
    """``POST /v1/calls/usage``'s answer (the route's and TelephonyFastPath's)."""
    service: AccountService = state.service
    with state.admission.admit(body.account_id, "usage", getattr(state, "meter", None)):
        result = await service.report_usage(
            body.account_id, body.call_id, body.seconds, body.request_id
        )
    return schemas.UsageOut(recorded=bool(result.recorded), duplicate=bool(result.duplicate))


@dataclass(frozen=True)
class _TelephonyRoute:
    body: type[schemas.AuthorizeIn] | type[schemas.UsageIn]
    answer: Callable[[State, Any], Awaitable[BaseModel]]
    exclude_none: bool  # the route's response_model_exclude_none


_FAST_ROUTES: dict[str, _TelephonyRoute] = {
    "/v1/calls/authorize": _TelephonyRoute(schemas.AuthorizeIn, answer_authorize, True),
    "/v1/calls/usage": _TelephonyRoute(schemas.UsageIn, answer_usage, False),
}
# The content types FastAPI reads as JSON that the fast path takes (others: the route).
_FAST_CONTENT_TYPES = frozenset({b"application/json", b"application/json; charset=utf-8"})
_JSON_HEADERS = b"application/json"


class TelephonyFastPath:
    """The telephony routes answered without FastAPI's request machinery.

    The two requests of every call went through Starlette's exception middleware, the
    router, FastAPI's request handler (a ``Request``, dependency solving, the body read
    and parsed again, validation, response validation and serialisation): more CPU per
    request than our own middleware and the service together. Here, a request that the
    route would answer from its endpoint (POST, the telephony token, a JSON body that
    validates) is validated with the route's own model and answered by the same function
    (``answer_authorize`` / ``answer_usage``), serialised as FastAPI does. Everything
    else (another method, a missing or wrong token, another content type, a body that
    does not parse or validate, a disconnect) is handed on, with the body replayed, to
    the FastAPI route, which answers it exactly as before: status, body and headers of
    every error come from the same code. Errors raised while answering go to the app's
    own exception handlers (Starlette's lookup), as they would from the route.
    """

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self.routes = _FAST_ROUTES
        self._handlers: tuple[dict[Any, Any], dict[int, Any]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        authorization = content_type = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value if authorization is None else authorization
            elif name == b"content-type":
                content_type = value if content_type is None else content_type
        state = self.api.state
        if (
            authorization is None
            or content_type is None
            or content_type.lower() not in _FAST_CONTENT_TYPES
            or not self._authorised(state, authorization)
        ):
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        body = _validated(route, received)
        if body is None:
            await self.app(scope, _replaying(received, receive), send)
            return
        try:
            answer = await route.answer(state, body)
        except Exception as err:
            await self._handle(err, scope, receive, send)
            return
        content = answer.__pydantic_serializer__.to_json(answer, exclude_none=route.exclude_none)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(content)).encode()),
                    (b"content-type", _JSON_HEADERS),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})

    @staticmethod
    def _authorised(state: State, authorization: bytes) -> bool:
        # As require_token("telephony_token") reads it (Starlette decodes latin-1).
        given = bearer_token(authorization.decode("latin-1"))
        return given is not None and is_static_token(state.settings, given, ("telephony_token",))

    async def _handle(self, err: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        """``err`` answered by the app's exception handlers, as ExceptionMiddleware would
        (raised on to the server error middleware when none handles it)."""
        if self._handlers is None:
            handlers = {
                key: value
                for key, value in self.api.exception_handlers.items()
                if key not in (500, Exception)  # the server error middleware's (outside)
            }
            self._handlers = (
                {k: v for k, v in handlers.items() if not isinstance(k, int)},
                {k: v for k, v in handlers.items() if isinstance(k, int)},
            )

        async def reraise(scope: Scope, receive: Receive, send: Send) -> None:
            raise err

        scope["starlette.exception_handlers"] = self._handlers
        await wrap_app_handling_exceptions(reraise, Request(scope, receive))(scope, receive, send)


def _validated(route: _TelephonyRoute, received: list[Message]) -> BaseModel | None:
    """The body as the route's model, or None when the route must answer it (it does not
    parse or validate, or the client went away: the route's error, not ours)."""
    if received[-1]["type"] != "http.request":
        return None
    raw = b"".join(message.get("body", b"") for message in received)
    try:
        # As FastAPI reads a JSON body (Starlette's Request.json) and validates it.
        return route.body.model_validate(json.loads(raw))
    except (ValueError, ValidationError):  # JSONDecodeError, UnicodeDecodeError
        return None


def _replaying(received: list[Message], receive: Receive) -> Receive:
    """``receive`` with the messages already read from it given again first."""
    pending = list(received)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def _telephony_first(app: FastAPI) -> None:
    """Match the telephony routes before all others, the OpenAPI document unchanged.

    The router tries routes in order, and each included router before them (payments,
    codec, reports, the web app's six, the customer API, health) walks its own routes
    on every request: a fifth of the API's CPU per telephony request went to not
    finding these two. Moved to the front only when no other route matches their
    paths (exact ones; none does today), so no request is routed differently. They are
    declared last, so the OpenAPI document lists their paths last, as before.
    """
    routes = app.router.routes
    count = len(TELEPHONY_PATHS)
    hot = routes[-count:]
    if [getattr(route, "path", None) for route in hot] != list(TELEPHONY_PATHS) or any(
        not isinstance(route, APIRoute) for route in hot
    ):
        return  # not declared as expected: leave the order alone
    others = routes[:-count]
    if any(_matches(route, path) for route in others for path in TELEPHONY_PATHS):
        return
    routes[:] = [*hot, *others]
    generate = app.openapi

    def openapi() -> dict[str, object]:
        schema = generate()  # cached by FastAPI; reordered once
        paths = schema.get("paths")
        if isinstance(paths, dict) and list(paths)[:count] == list(TELEPHONY_PATHS):
            moved = {path: paths.pop(path) for path in TELEPHONY_PATHS}
            paths.update(moved)
        return schema

    # FastAPI's documented way to customise the schema: replace the method.
    app.openapi = openapi  # type: ignore[method-assign]


def _matches(route: BaseRoute, path: str) -> bool:
    """Whether ``route`` would take (or answer 405 for) a request for ``path``."""
    scope = {"type": "http", "method": "POST", "path": path, "root_path": "", "headers": []}
    return route.matches(scope)[0] is not Match.NONE


def state_out(snapshot: AccountSnapshot, zone: ZoneInfo) -> schemas.StateOut:
    return schemas.StateOut(
        period_start=snapshot.period_start.astimezone(zone).isoformat(),
        period_end=snapshot.period_end.astimezone(zone).isoformat(),
        plan=snapshot.plan,
        included_seconds=snapshot.included_seconds,
        used_seconds=snapshot.used_seconds,
        extra_seconds=snapshot.extra_seconds,
        extra_cost_cents=snapshot.extra_cost_cents,
        enabled=snapshot.enabled,
        limit_cents=snapshot.limit_cents,
        limit_minutes=snapshot.limit_minutes,
        extra_allowed_seconds=snapshot.extra_allowed_seconds,
        reserved_seconds=snapshot.reserved_seconds,
        accepting_calls=snapshot.accepting_calls,
        stop_reason=snapshot.stop_reason,
        payment_method_on_file=snapshot.payment_method_on_file,
        payment_overdue=snapshot.payment_overdue,
        undelivered_notices=snapshot.undelivered_notices,
        undelivered_events=snapshot.undelivered_events,
        unwritten_usage=snapshot.unwritten_usage,
        monthly_fee_cents=snapshot.monthly_fee_cents,
        extra_minute_price_cents=snapshot.extra_minute_price_cents,
        included_used_seconds=snapshot.included_used_seconds,
        alert_thresholds=snapshot.alert_percents,
        priced_usage=[schemas.PricedUsageOut(**vars(p)) for p in snapshot.priced_usage],
    )


def _extra_minutes_out(snapshot: AccountSnapshot) -> schemas.ExtraMinutesOut:
    return schemas.ExtraMinutesOut(
        enabled=snapshot.enabled,
        limit_cents=snapshot.limit_cents,
        limit_minutes=snapshot.limit_minutes,
        extra_allowed_seconds=snapshot.extra_allowed_seconds,
        accepting_calls=snapshot.accepting_calls,
        stop_reason=snapshot.stop_reason,
    )


def _install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as ``{"error": CODE, "detail": TEXT}``."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(
            {"error": err.code, "detail": err.detail},
            status_code=err.status,
            headers=err.headers or None,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        parts = []
        for problem in err.errors():
            where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body")
            parts.append(f"{where or 'body'}: {problem.get('msg', 'invalid')}")
        return JSONResponse(
            {"error": "invalid_request", "detail": "; ".join(parts)}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> Response:
        if err.status_code == 404 and wants_web_page(request):
            # A mistyped web-app address: the web app's page, in the customer's language.
            return await error_page(request, 404, "notfound")
        if err.status_code == 400:
            # FastAPI's "There was an error parsing the body": bad input, like any other.
            return JSONResponse(
                {"error": "invalid_request", "detail": f"the body cannot be read: {err.detail}"},
                status_code=422,
            )
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        return JSONResponse({"error": code, "detail": str(err.detail)}, status_code=err.status_code)


def app_from_env() -> FastAPI:
    # Imported here: only the process entry point checks (tests build apps with their
    # own dev secrets through create_app).
    from overtime.production import require_production_ready

    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    # Before anything connects: production with a dev secret exits here, naming each.
    require_production_ready(settings)
    return create_app(settings)
