"""Passwords (Argon2id), sessions, CSRF tokens and the login throttle.

* Passwords are hashed with argon2-cffi's ``PasswordHasher`` (Argon2id, RFC 9106
  parameters) and re-hashed on sign-in when the parameters change.
* The session is Starlette's signed cookie (itsdangerous): HttpOnly, SameSite=Lax,
  ``Secure`` when ``OVERTIME_WEB_HTTPS_ONLY``. It holds who signed in, the login's
  ``session_epoch`` (a password change ends every other session) and the CSRF token.
  Signing in replaces the whole session (no fixation).
* Every POST from a page carries the session's CSRF token, as the form field
  ``csrf_token`` or the ``X-CSRF-Token`` header (fetch / htmx); compared in constant time.
* Failed sign-ins are rows in ``web_login_failure`` (so every API process sees them): at
  most ``web_login_max_failures`` per email and ``web_login_max_failures_per_ip`` per
  client address within the window; beyond that even the right password is refused
  until the window has passed. Success clears the email's failures.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request
from sqlalchemy import delete, func
from sqlmodel import select

from overtime.db import session_scope
from overtime.models import Account, WebLogin, WebLoginFailure

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

_hasher = PasswordHasher()
# Verified against when the email is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("not-a-password-anyone-has")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def burn_time(password: str) -> None:
    verify_password(_DUMMY_HASH, password)


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


def normalise_email(email: str) -> str:
    return email.strip().lower()


# --- who is signed in --------------------------------------------------------------------


@dataclass(frozen=True)
class WebUser:
    kind: str  # "customer" | "admin"
    email: str
    account_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    @property
    def actor(self) -> str:
        """How settings changes name this user in the history."""
        return f"{self.kind}:{self.email}"


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, given: str | None) -> bool:
    expected = request.session.get("csrf")
    if not expected or not given:
        return False
    return hmac.compare_digest(str(given).encode(), str(expected).encode())


def start_session(request: Request, user: WebUser, epoch: int = 0) -> None:
    """A fresh session for ``user`` (nothing from before survives, not the CSRF token)."""
    lang = request.session.get("lang")
    request.session.clear()
    request.session.update(
        {
            "kind": user.kind,
            "email": user.email,
            "account_id": user.account_id,
            "epoch": epoch,
            "csrf": secrets.token_urlsafe(32),
        }
    )
    if lang:
        request.session["lang"] = lang


def end_session(request: Request) -> None:
    lang = request.session.get("lang")
    request.session.clear()
    if lang:
        request.session["lang"] = lang


def session_user(request: Request, db: str) -> WebUser | None:
    """The signed-in user, checked against the database (deleted or re-keyed logins end)."""
    kind = request.session.get("kind")
    email = request.session.get("email")
    if kind == "admin" and email:
        return WebUser("admin", email)
    if kind != "customer" or not email:
        return None
    account_id = request.session.get("account_id")
    with session_scope(db) as session:
        login = session.get(WebLogin, account_id)
    if login is None or login.session_epoch != request.session.get("epoch"):
        end_session(request)
        return None
    return WebUser("customer", login.email, login.account_id)


# --- customer logins ------------------------------------------------------------------------


def set_password(db: str, account_id: str, password: str) -> WebLogin:
    """Create or replace an account's login (its email is the account's email).

    Raises ``LookupError`` for an unknown account and ``ValueError`` when another
    account already signs in with the same email.
    """
    password_hash = hash_password(password)
    with session_scope(db) as session:
        account = session.get(Account, account_id)
        if account is None:
            raise LookupError(account_id)
        email = normalise_email(account.email)
        other = session.exec(
            select(WebLogin).where(WebLogin.email == email, WebLogin.account_id != account_id)
        ).first()
        if other is not None:
            raise ValueError(f"{email} already signs in to account {other.account_id}")
        login = session.get(WebLogin, account_id)
        now = datetime.now(UTC)
        if login is None:
            login = WebLogin(
                account_id=account_id, email=email, password_hash=password_hash, updated_at=now
            )
        else:
            login.email = email
            login.password_hash = password_hash
            login.session_epoch += 1
            login.updated_at = now
        session.add(login)
        session.commit()
        return login


def find_login(db: str, email: str) -> WebLogin | None:
    with session_scope(db) as session:
        return session.exec(
            select(WebLogin).where(WebLogin.email == normalise_email(email))
        ).first()


def rehash(db: str, account_id: str, password: str) -> None:
    with session_scope(db) as session:
        login = session.get(WebLogin, account_id)
        if login is not None:
            login.password_hash = hash_password(password)
            session.add(login)
            session.commit()


# --- throttle -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throttle:
    max_per_email: int
    max_per_ip: int
    window_seconds: int

    def keys(self, email: str, ip: str) -> tuple[str, str]:
        return f"email:{normalise_email(email)}"[:400], f"ip:{ip}"[:400]

    def locked(self, db: str, email: str, ip: str) -> bool:
        email_key, ip_key = self.keys(email, ip)
        since = datetime.now(UTC) - timedelta(seconds=self.window_seconds)
        with session_scope(db) as session:

            def failures(key: str) -> int:
                return session.exec(
                    select(func.count())
                    .select_from(WebLoginFailure)
                    .where(WebLoginFailure.key == key, WebLoginFailure.failed_at >= since)
                ).one()

            return failures(email_key) >= self.max_per_email or failures(ip_key) >= self.max_per_ip

    def failed(self, db: str, email: str, ip: str) -> None:
        now = datetime.now(UTC)
        with session_scope(db) as session:
            for key in self.keys(email, ip):
                session.add(WebLoginFailure(key=key, failed_at=now))
            # Old rows are no longer counted; drop them while we are here.
            session.exec(  # type: ignore[call-overload]
                delete(WebLoginFailure).where(
                    WebLoginFailure.failed_at < now - timedelta(seconds=self.window_seconds)
                )
            )
            session.commit()

    def succeeded(self, db: str, email: str) -> None:
        email_key, _ = self.keys(email, "")
        with session_scope(db) as session:
            session.exec(  # type: ignore[call-overload]
                delete(WebLoginFailure).where(WebLoginFailure.key == email_key)
            )
            session.commit()
