"""Server-side web sessions: the cookie is a random id, the session lives in ``web_session``.

* The cookie (``overtime_session``) carries ``secrets.token_urlsafe(32)`` and nothing else:
  no email, no account id, no CSRF token, nothing to decode. The table keys rows by
  HMAC-SHA256(``web_session_secret``, id), so a copy of the database opens no session
  (and a new secret ends every session).
* Only the web app's pages (``is_web_path``: ``/``, ``/login``, ``/logout``, ``/app…``,
  ``/admin…``, the price overview ``/preise`` and ``/prices``) have sessions, and only a
  cookie of the shape of ``token_urlsafe(32)`` is looked up: the telephony API, static
  files, health and metrics never query the table, whatever cookie a browser sends along.
* ``request.session`` is a plain dict as with Starlette's ``SessionMiddleware``; the
  middleware writes it back only when it changed. ``kind``/``email``/``account_id`` (who
  is signed in), ``csrf`` and ``lang`` have columns, other keys (``epoch``, ``flash``, a
  pending two-step sign-in) go to the JSON ``data`` column.
* Who is signed in changing (sign-in, sign-out, a session found stale) always gives a new
  id and deletes the old row: no fixation, and a cookie copied before ``POST /logout``
  stops working at once. Deleting rows (``end_account_sessions``) ends sessions
  elsewhere: an admin's button, a new password.
* Expiry is absolute: a signed-in session ends ``web_session_max_age_seconds`` after
  sign-in. Anonymous visitors (the login form's CSRF token, the language) get a row only
  once something is stored, for ``web_session_anonymous_max_age_seconds``; at most every
  ``PRUNE_EVERY_SECONDS`` a process deletes expired rows and, beyond
  ``web_session_max_anonymous`` anonymous rows, the oldest of them, so nobody can grow
  the table without bound (a flood only costs the oldest anonymous visitors their login
  form: "session expired, try again").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from overtime.db import session_scope
from overtime.models import WebSession

SESSION_COOKIE = "overtime_session"
ANONYMOUS = "anonymous"
IDENTITY = ("kind", "email", "account_id")
COLUMNS = ("kind", "email", "account_id", "csrf", "lang")
# last_seen is written at most this often per session (not on every page view).
TOUCH_EVERY_SECONDS = 60
PRUNE_EVERY_SECONDS = 30
# The shape of secrets.token_urlsafe(32): 32 bytes, unpadded URL-safe base64. A cookie of
# any other shape cannot be one of ours, so it is no session without asking the database.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
# Only the web app's pages have sessions (starter/web/login.py, customer.py, admin.py).
# Everything else (/v1/* on the telephony hot path, /static/*, /healthz, /livez, /metrics,
# /codec, /openapi.json, /docs) never reads request.session, so a cookie a browser sends
# along there must not cost a database query.
# The public price overview (starter/web/prices.py) is a page too: it remembers ?lang=.
WEB_PATHS = frozenset({"/", "/login", "/logout", "/app", "/admin", "/preise", "/prices"})
WEB_PREFIXES = ("/app/", "/admin/")

log = logging.getLogger(__name__)


def id_hash(secret: str, token: str) -> str:
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Loaded:
    id_hash: str
    values: dict[str, Any]


@dataclass
class SessionStore:
    """Rows of ``web_session`` for one database and secret."""

    db: str
    secret: str
    max_age_seconds: int
    anonymous_max_age_seconds: int
    max_anonymous: int

    def load(self, token: str) -> Loaded | None:
        key = id_hash(self.secret, token)
        now = datetime.now(UTC)
        with session_scope(self.db) as session:
            row = session.get(WebSession, key)
            if row is None:
                return None
            if row.expires_at <= now:
                session.delete(row)
                session.commit()
                return None
            if (now - row.last_seen).total_seconds() >= TOUCH_EVERY_SECONDS:
                row.last_seen = now
                session.add(row)
                session.commit()
            values: dict[str, Any] = json.loads(row.data or "{}")
            for column in COLUMNS:
                value = getattr(row, column)
                if value is not None and not (column == "kind" and value == ANONYMOUS):
                    values[column] = value
            return Loaded(key, values)

    def save(self, loaded: Loaded | None, values: dict[str, Any]) -> tuple[str, int] | None:
        """Write ``values`` back. Returns ``(token, max_age)`` for a new cookie, ``("", 0)``
        to delete the cookie, or ``None`` when the cookie stays as it is."""
        now = datetime.now(UTC)
        with session_scope(self.db) as session:
            if not values:
                if loaded is not None:
                    session.exec(
                        delete(WebSession).where(col(WebSession.id_hash) == loaded.id_hash)
                    )
                    session.commit()
                    return "", 0
                return None
            columns = {c: values.get(c) for c in COLUMNS}
            kind = str(columns["kind"] or ANONYMOUS)
            data = json.dumps({k: v for k, v in values.items() if k not in COLUMNS})
            same_identity = loaded is not None and all(
                loaded.values.get(k) == values.get(k) for k in IDENTITY
            )
            if loaded is not None and same_identity:
                row = session.get(WebSession, loaded.id_hash)
                if row is not None:  # else: ended meanwhile; stays ended
                    row.csrf, row.lang, row.data = columns["csrf"], columns["lang"], data
                    row.last_seen = now
                    session.add(row)
                    session.commit()
                return None
            if loaded is not None:
                # Someone else now (sign-in, sign-out): the old id must never work again.
                session.exec(delete(WebSession).where(col(WebSession.id_hash) == loaded.id_hash))
            max_age = self.anonymous_max_age_seconds if kind == ANONYMOUS else self.max_age_seconds
            token = secrets.token_urlsafe(32)
            session.add(
                WebSession(
                    id_hash=id_hash(self.secret, token),
                    kind=kind,
                    email=columns["email"],
                    account_id=columns["account_id"],
                    csrf=columns["csrf"],
                    lang=columns["lang"],
                    data=data,
                    created_at=now,
                    last_seen=now,
                    expires_at=now + timedelta(seconds=max_age),
                )
            )
            session.commit()
        self._maybe_prune()
        return token, max_age

    _pruned_at: float = field(default=0.0, repr=False)
    _prune_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _maybe_prune(self) -> None:
        with self._prune_lock:
            if time.monotonic() - self._pruned_at < PRUNE_EVERY_SECONDS:
                return
            self._pruned_at = time.monotonic()
        self.prune()

    def prune(self) -> int:
        """Delete expired rows and anonymous rows beyond the cap (oldest first)."""
        now = datetime.now(UTC)
        with session_scope(self.db) as session:
            expired = session.exec(
                delete(WebSession).where(col(WebSession.expires_at) <= now)
            ).rowcount
            anonymous = session.exec(
                select(func.count()).select_from(WebSession).where(WebSession.kind == ANONYMOUS)
            ).one()
            evicted = 0
            if anonymous > self.max_anonymous:
                # A tenth below the cap, so the next flood does not evict on every prune.
                excess = anonymous - self.max_anonymous + self.max_anonymous // 10
                oldest = (
                    select(WebSession.id_hash)
                    .where(WebSession.kind == ANONYMOUS)
                    .order_by(col(WebSession.created_at))
                    .limit(excess)
                )
                evicted = session.exec(
                    delete(WebSession).where(col(WebSession.id_hash).in_(oldest.scalar_subquery()))
                ).rowcount
                log.warning(
                    "anonymous web sessions beyond the cap: oldest evicted",
                    extra={"event": "web_sessions_evicted", "evicted": evicted},
                )
            session.commit()
        return int(expired or 0) + int(evicted or 0)


def end_account_sessions(db: str, account_id: str) -> int:
    """End every web session signed in to ``account_id``; returns how many there were."""
    with session_scope(db) as session:
        ended = session.exec(
            delete(WebSession).where(
                col(WebSession.account_id) == account_id, col(WebSession.kind) == "customer"
            )
        ).rowcount
        session.commit()
    return int(ended or 0)


def count_account_sessions(db: str, account_id: str) -> int:
    now = datetime.now(UTC)
    with session_scope(db) as session:
        return session.exec(
            select(func.count())
            .select_from(WebSession)
            .where(
                WebSession.account_id == account_id,
                WebSession.kind == "customer",
                WebSession.expires_at > now,
            )
        ).one()


def _cookie_header(name: str, token: str, max_age: int, secure: bool) -> str:
    if not token:
        value = f"{name}=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    else:
        value = f"{name}={token}; Path=/; Max-Age={max_age}"
    return value + "; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")


def is_web_path(path: str) -> bool:
    return path in WEB_PATHS or path.startswith(WEB_PREFIXES)


def well_formed(token: str) -> bool:
    return TOKEN_SHAPE.fullmatch(token) is not None


def _token_from(scope: Scope, name: str) -> str | None:
    for key, raw in scope.get("headers", []):
        if key != b"cookie":
            continue
        cookies = SimpleCookie()
        try:
            cookies.load(raw.decode("latin-1"))
        except Exception:  # a malformed Cookie header: no session, not a 500
            continue
        morsel = cookies.get(name)
        if morsel is not None and well_formed(morsel.value):
            return morsel.value
    return None


class ServerSessionMiddleware:
    """``request.session`` backed by ``web_session``; settings read from ``app.state`` at
    each request (``settings``, ``web_settings``), so tests may change them on a live app.

    Only the web app's paths (``is_web_path``) load and save sessions; elsewhere
    ``request.session`` is an empty dict that is never stored (no query, no cookie)."""

    def __init__(self, app: ASGIApp, cookie_name: str = SESSION_COOKIE) -> None:
        self.app = app
        self.cookie_name = cookie_name
        self._stores: dict[tuple[str, str, int, int, int], SessionStore] = {}

    def store_for(self, state: Any) -> SessionStore:
        web = state.web_settings
        key = (
            state.settings.resolved_database_url(),
            web.web_session_secret,
            web.web_session_max_age_seconds,
            web.web_session_anonymous_max_age_seconds,
            web.web_session_max_anonymous,
        )
        store = self._stores.get(key)
        if store is None:
            store = self._stores[key] = SessionStore(*key)
        return store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not is_web_path(scope.get("path", "")):
            scope["session"] = {}
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        store = self.store_for(state)
        secure = bool(state.web_settings.web_https_only)
        token = _token_from(scope, self.cookie_name)
        loaded = await run_in_threadpool(store.load, token) if token else None
        session: dict[str, Any] = dict(loaded.values) if loaded else {}
        before = json.dumps(session, sort_keys=True, default=str)
        scope["session"] = session

        async def send_with_session(message: Message) -> None:
            if message["type"] == "http.response.start":
                after = json.dumps(session, sort_keys=True, default=str)
                if after != before:
                    cookie = await run_in_threadpool(store.save, loaded, session)
                    if cookie is not None:
                        headers = MutableHeaders(scope=message)
                        headers.append(
                            "set-cookie", _cookie_header(self.cookie_name, *cookie, secure)
                        )
            await send(message)

        await self.app(scope, receive, send_with_session)
