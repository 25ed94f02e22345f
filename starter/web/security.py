"""Passwords (Argon2id), sessions, CSRF tokens, the sign-in throttle and one-time codes.

* Passwords are hashed with argon2-cffi's ``PasswordHasher`` (Argon2id, RFC 9106
  parameters) and re-hashed on sign-in when the parameters change.
* Sessions are server-side (``starter/web/sessions.py``): the cookie is a random id. A
  session holds who signed in, the login's ``session_epoch`` (a password change ends
  every other session; its rows are deleted too) and the CSRF token. Signing in replaces
  the whole session and its id (no fixation).
* Every POST from a page carries the session's CSRF token, as the form field
  ``csrf_token`` or the ``X-CSRF-Token`` header (fetch / htmx); compared in constant time.
* Failed sign-ins are rows in ``web_login_failure`` (so every API process sees them),
  keyed by the client address (``request.client.host``: the peer, or what a trusted proxy
  says, see ``Settings.trusted_proxies``; an IPv6 client by its /64, ``address_key``) and
  by an HMAC of the email:
  - per address: ``web_login_max_failures_per_ip`` failures in the window and that
    address gets 429 with ``Retry-After`` until the oldest ages out;
  - per account, never a lockout: from ``web_login_delay_after_failures`` failures on
    every answer waits (doubling, capped), and from ``web_login_max_failures`` on the
    right password alone is not enough: a one-time code goes to the owner's email (only
    ever after the right password, so wrong guesses send no mail) and the login page
    asks for it, after a wrong password just the same (the answer must not tell which;
    a code then never works). Success clears the email's failures.
* One-time codes: each attempt takes one of the code's attempts atomically before it is
  compared; new codes are issued at most once per resend interval (from the last issue,
  even if that code was used up) and a few per hour per login (``issue_code``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request
from sqlalchemy import ColumnElement, delete, func, text, update
from sqlmodel import Session, col, select

from overtime.db import session_scope
from overtime.models import Account, WebLogin, WebLoginCode, WebLoginFailure, WebSession

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


def start_session(request: Request, user: WebUser, epoch: int | str = 0) -> None:
    """A fresh session for ``user`` (nothing from before survives, not the CSRF token).

    ``epoch``: a customer's login row's ``session_epoch``; the admin's is a hash of the
    admin credentials (``pages.admin_epoch``)."""
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
        # The epoch already ends them; deleting the rows makes it visible to the admin.
        session.exec(
            delete(WebSession).where(
                col(WebSession.account_id) == account_id, col(WebSession.kind) == "customer"
            )
        )
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


def login_key(secret: str, email: str) -> str:
    """The email as the throttle and the codes store it: an HMAC, not the address."""
    message = b"login\0" + normalise_email(email).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def email_digest(email: str) -> str:
    """For logs: the same email gives the same digest, the log holds no address."""
    return hashlib.sha256(normalise_email(email).encode()).hexdigest()[:16]


def mask_email(email: str) -> str:
    local, at, domain = normalise_email(email).partition("@")
    return f"{local[:1]}***{at}{domain}"[:100]


def address_key(ip: str) -> str:
    """The client as the per-address limit counts it: an IPv4 address as it is, an IPv6
    client by its /64 (one subscriber or host usually holds a whole /64, so counting each
    of its 2**64 addresses apart would make the limit worthless). IPv4-mapped IPv6
    addresses count as the IPv4 address; anything unparsable as the text itself."""
    try:
        parsed = ipaddress.ip_address(ip.strip().split("%", 1)[0])  # no zone id
    except ValueError:
        return ip[:100]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


@dataclass(frozen=True)
class ThrottleStatus:
    email_failures: int
    ip_failures: int
    ip_retry_after: int  # seconds until the address is below its limit again


@dataclass(frozen=True)
class Throttle:
    secret: str
    max_per_email: int
    max_per_ip: int
    window_seconds: int
    delay_after: int
    delay_seconds: float
    delay_max_seconds: float

    def keys(self, email: str, ip: str) -> tuple[str, str]:
        return f"email:{login_key(self.secret, email)}", f"ip:{address_key(ip)}"

    def status(self, db: str, email: str, ip: str) -> ThrottleStatus:
        email_key, ip_key = self.keys(email, ip)
        now = datetime.now(UTC)
        since = now - timedelta(seconds=self.window_seconds)
        with session_scope(db) as session:

            def failures(key: str) -> tuple[int, datetime | None]:
                count, oldest = session.exec(
                    select(func.count(), func.min(WebLoginFailure.failed_at)).where(
                        WebLoginFailure.key == key, WebLoginFailure.failed_at >= since
                    )
                ).one()
                return int(count), oldest

            email_failures, _ = failures(email_key)
            ip_failures, oldest = failures(ip_key)
        retry = 1
        if oldest is not None:
            oldest = oldest.replace(tzinfo=UTC) if oldest.tzinfo is None else oldest
            left = (oldest + timedelta(seconds=self.window_seconds) - now).total_seconds()
            retry = max(1, math.ceil(left))
        return ThrottleStatus(email_failures, ip_failures, retry)

    def address_blocked(self, status: ThrottleStatus) -> bool:
        return status.ip_failures >= self.max_per_ip

    def code_required(self, status: ThrottleStatus) -> bool:
        return status.email_failures >= self.max_per_email

    def delay(self, status: ThrottleStatus) -> float:
        """Seconds to wait before answering a sign-in to an account with these failures:
        nothing for the first few, then doubling, capped (slows guessing, locks nobody
        out)."""
        beyond = status.email_failures - self.delay_after
        if beyond < 0 or self.delay_seconds <= 0:
            return 0.0
        return min(self.delay_seconds * 2 ** min(beyond, 30), self.delay_max_seconds)

    def failed(self, db: str, email: str, ip: str) -> int:
        """Record a failure; returns the email's failures in the window, this one included."""
        email_key, _ = self.keys(email, ip)
        now = datetime.now(UTC)
        with session_scope(db) as session:
            for key in self.keys(email, ip):
                session.add(WebLoginFailure(key=key, failed_at=now))
            # Old rows are no longer counted; drop them while we are here.
            session.exec(
                delete(WebLoginFailure).where(
                    col(WebLoginFailure.failed_at) < now - timedelta(seconds=self.window_seconds)
                )
            )
            session.commit()
            return session.exec(
                select(func.count())
                .select_from(WebLoginFailure)
                .where(
                    WebLoginFailure.key == email_key,
                    WebLoginFailure.failed_at >= now - timedelta(seconds=self.window_seconds),
                )
            ).one()

    def succeeded(self, db: str, email: str) -> None:
        email_key, _ = self.keys(email, "")
        with session_scope(db) as session:
            session.exec(delete(WebLoginFailure).where(col(WebLoginFailure.key) == email_key))
            use_up_codes(session, self.secret, email)
            session.commit()


# --- one-time codes ---------------------------------------------------------------------------
#
# A login's rows in ``web_login_code`` are its issuance history as well as its live code:
# a used, exhausted or superseded code keeps its row (``code_hash`` emptied, or
# ``attempts`` at the limit) until it leaves the issuance window, so the resend limit and
# the per-window cap hold even after the code is gone (5 wrong codes must not buy a fresh
# code, and 5 more guesses, at once).

_USED = ""  # code_hash of a row that can no longer sign in (used or superseded)


@dataclass(frozen=True)
class IssuedCode:
    id: int
    code: str


def _code_hash(secret: str, key: str, code: str) -> str:
    message = f"code\0{key}\0{code}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _lock_login(session: Session, key: str) -> None:
    """Serialise the issuing of one login's codes across processes, so concurrent sign-ins
    with the password cannot all pass the resend check and each send a mail. PostgreSQL:
    a transaction-scoped advisory lock on the key. SQLite: the transaction's first
    statement is a write (see ``issue_code``), which takes the database's write lock."""
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(b"web_login_code\0" + key.encode()).digest()
        lock_id = int.from_bytes(digest[:8], signed=True)
        # SQLModel types exec() for select/insert/update/delete only; text() runs the same way.
        session.exec(  # type: ignore[call-overload]
            text("SELECT pg_advisory_xact_lock(:id)"), params={"id": lock_id}
        )


def _live(key: str, now: datetime) -> list[ColumnElement[bool]]:
    return [
        col(WebLoginCode.login_key) == key,
        col(WebLoginCode.expires_at) > now,
        col(WebLoginCode.code_hash) != _USED,
    ]


def issue_code(
    db: str,
    secret: str,
    email: str,
    ttl_seconds: int,
    resend_seconds: int,
    max_per_window: int,
    window_seconds: int,
) -> IssuedCode | None:
    """A fresh six-digit code for this login (older ones stop working), or ``None`` when
    the last one was issued less than ``resend_seconds`` ago (whether or not it is still
    usable) or ``max_per_window`` were issued within ``window_seconds``: no mail flood and
    no endless code guessing, even from someone with the password. A code already sent
    stays usable meanwhile (the owner with their mail is never locked out)."""
    key = login_key(secret, email)
    now = datetime.now(UTC)
    window = max(window_seconds, ttl_seconds, resend_seconds)
    with session_scope(db) as session:
        # Rows every login no longer needs, in a transaction of their own and a minute
        # late: the issuing below touches only rows younger than that (and live ones), so
        # the two never wait on each other's row locks (no deadlock).
        session.exec(
            delete(WebLoginCode).where(
                col(WebLoginCode.created_at) < now - timedelta(seconds=window + 60),
                col(WebLoginCode.expires_at) < now,
            )
        )
        session.commit()
    with session_scope(db) as session:
        _lock_login(session, key)
        # The older codes stop working (undone by the rollback when none is issued). The
        # first statement a write: on SQLite it takes the write lock.
        session.exec(update(WebLoginCode).where(*_live(key, now)).values(code_hash=_USED))
        latest, recent = session.exec(
            select(
                func.max(WebLoginCode.created_at),
                func.count().filter(
                    col(WebLoginCode.created_at) >= now - timedelta(seconds=window_seconds)
                ),
            ).where(WebLoginCode.login_key == key)
        ).one()
        too_soon = False
        if latest is not None:
            latest = latest.replace(tzinfo=UTC) if latest.tzinfo is None else latest
            too_soon = (now - latest).total_seconds() < resend_seconds
        if too_soon or int(recent) >= max_per_window:
            session.rollback()
            return None
        code = f"{secrets.randbelow(10**6):06d}"
        row = WebLoginCode(
            login_key=key,
            code_hash=_code_hash(secret, key, code),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
        session.add(row)
        session.commit()
        assert row.id is not None
        return IssuedCode(row.id, code)


def void_code(db: str, issued: IssuedCode) -> None:
    """Forget a code that could not be sent: nobody got it, so it must neither count
    towards the resend limit and the cap nor hold back the next attempt's fresh one."""
    with session_scope(db) as session:
        session.exec(delete(WebLoginCode).where(col(WebLoginCode.id) == issued.id))
        session.commit()


def use_up_codes(session: Session, secret: str, email: str) -> None:
    """The login signed in: its codes stop working; their rows stay for the resend limit."""
    now = datetime.now(UTC)
    session.exec(
        update(WebLoginCode).where(*_live(login_key(secret, email), now)).values(code_hash=_USED)
    )


def check_code(db: str, secret: str, email: str, code: str, max_attempts: int) -> bool:
    """True once for the right, unexpired code (it is then used up). Every try, right or
    wrong, first takes one of the code's ``max_attempts`` in a single conditional UPDATE,
    so concurrent guesses cannot all read the same count: once they are taken, nothing
    is compared at all (the owner signs in with the password again for a new code, after
    the resend limit). A login without a live code costs the same statements."""
    key = login_key(secret, email)
    now = datetime.now(UTC)
    given = _code_hash(secret, key, "".join(code.split())[:16])
    with session_scope(db) as session:
        taken = session.exec(
            update(WebLoginCode)
            .where(*_live(key, now), col(WebLoginCode.attempts) < max_attempts)
            .values(attempts=col(WebLoginCode.attempts) + 1)
            .returning(col(WebLoginCode.id), col(WebLoginCode.code_hash))
        ).all()
        # At most one live row (issuing supersedes the others); without one, compare
        # against nothing that can match, for the same work.
        row_id, stored = taken[0] if taken else (None, _code_hash(secret, key, "\0none"))
        right = hmac.compare_digest(stored, given) and row_id is not None
        if right:
            # The row stays locked by our UPDATE until this commit (PostgreSQL; SQLite
            # holds its write lock), so a concurrent try with the same code waits and
            # then finds it used: single use.
            session.exec(
                update(WebLoginCode).where(col(WebLoginCode.id) == row_id).values(code_hash=_USED)
            )
        session.commit()
        return right
