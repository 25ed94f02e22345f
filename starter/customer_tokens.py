"""The mobile app's tokens: issue, check, rotate and revoke (table ``customer_token``).

* A token is a prefix and 256 random bits (``secrets.token_urlsafe(32)``): ``ota_…`` for
  access tokens, ``otr_…`` for refresh tokens. The prefix lets the admin and telephony
  checks skip the database for anything that is not ours, and lets secret scanners
  recognise a leaked token. The table keeps only ``HMAC-SHA256(secret, kind, token)``
  (the web-session secret): a copied database opens nothing.
* A sign-in with the password starts a *family* (one device's sign-in). Its access
  tokens live minutes; its refresh token is single use: refreshing spends it and gives a
  new pair in the same family. A spent refresh token presented again means two parties
  hold it (OAuth 2.0 Security BCP, RFC 9700 §4.14.2): the whole family ends, the
  attacker's tokens and the owner's alike, and the owner signs in again.
* Every token carries the login's ``session_epoch`` at sign-in. A new password raises
  the epoch (``starter.web.security.set_password``), so every family of the account
  stops working at once, without a write here. ``revoke_account`` ends them on purpose
  (the admin's ``DELETE /v1/accounts/{id}/sessions``).

All functions are blocking (database): run them in a thread.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from overtime.db import session_scope
from overtime.models import CustomerToken, WebLogin

log = logging.getLogger(__name__)

ACCESS_PREFIX = "ota_"
REFRESH_PREFIX = "otr_"
# Prefix and token_urlsafe(32): 4 + 43 characters. Anything longer is not ours.
TOKEN_MAX_LENGTH = 64
# Expired rows stay this long before a sign-in deletes them.
PRUNE_AFTER = timedelta(days=1)

Kind = Literal["access", "refresh"]


@dataclass(frozen=True)
class TokenLifetimes:
    access_seconds: int
    refresh_seconds: int
    family_seconds: int


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime
    account_id: str
    family_id: str


@dataclass(frozen=True)
class Customer:
    """Who a valid access token speaks for."""

    account_id: str
    email: str
    family_id: str


@dataclass(frozen=True)
class AccessCheck:
    customer: Customer | None
    # Why not, when ``customer`` is None: "invalid" (unknown, revoked, a new password, no
    # login any more) or "expired" (a refresh gives a new one, if the family lives).
    problem: Literal["", "invalid", "expired"] = ""


@dataclass(frozen=True)
class RefreshOutcome:
    issued: IssuedTokens | None
    # "" | "invalid" (unknown) | "expired" | "revoked" | "reused" (the family was ended now)
    problem: str = ""


def looks_like(token: str, kind: Kind) -> bool:
    prefix = ACCESS_PREFIX if kind == "access" else REFRESH_PREFIX
    return token.startswith(prefix) and len(token) <= TOKEN_MAX_LENGTH


def token_hash(secret: str, kind: Kind, token: str) -> str:
    message = f"customer-token\0{kind}\0{token}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _new_token(kind: Kind) -> str:
    prefix = ACCESS_PREFIX if kind == "access" else REFRESH_PREFIX
    return prefix + secrets.token_urlsafe(32)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _pair(
    secret: str,
    lifetimes: TokenLifetimes,
    account_id: str,
    family_id: str,
    login_epoch: int,
    family_expires_at: datetime,
    now: datetime,
) -> tuple[IssuedTokens, list[CustomerToken]]:
    access, refresh = _new_token("access"), _new_token("refresh")
    access_expires = min(now + timedelta(seconds=lifetimes.access_seconds), family_expires_at)
    refresh_expires = min(now + timedelta(seconds=lifetimes.refresh_seconds), family_expires_at)
    tokens: tuple[tuple[Kind, str, datetime], ...] = (
        ("access", access, access_expires),
        ("refresh", refresh, refresh_expires),
    )
    rows = [
        CustomerToken(
            token_hash=token_hash(secret, kind, token),
            kind=kind,
            family_id=family_id,
            account_id=account_id,
            login_epoch=login_epoch,
            created_at=now,
            expires_at=expires,
            family_expires_at=family_expires_at,
        )
        for kind, token, expires in tokens
    ]
    issued = IssuedTokens(access, refresh, access_expires, refresh_expires, account_id, family_id)
    return issued, rows


def sign_in(db: str, secret: str, lifetimes: TokenLifetimes, login: WebLogin) -> IssuedTokens:
    """A new family for ``login`` (the password was right): its first access and refresh
    token. Rows of every account expired a day ago are dropped on the way (sign-ins are
    rare; the day keeps "token_expired" apart from "invalid_token" for a late app)."""
    now = datetime.now(UTC)
    family_id = secrets.token_hex(16)
    family_expires = now + timedelta(seconds=lifetimes.family_seconds)
    issued, rows = _pair(
        secret, lifetimes, login.account_id, family_id, login.session_epoch, family_expires, now
    )
    with session_scope(db) as session:
        session.exec(delete(CustomerToken).where(col(CustomerToken.expires_at) < now - PRUNE_AFTER))
        session.add_all(rows)
        session.commit()
    return issued


def check_access(db: str, secret: str, token: str) -> AccessCheck:
    """The customer behind an access token, or why there is none. One indexed query."""
    if not looks_like(token, "access"):
        return AccessCheck(None, "invalid")
    now = datetime.now(UTC)
    with session_scope(db) as session:
        found = session.exec(
            select(CustomerToken, WebLogin)
            .join(WebLogin, col(WebLogin.account_id) == col(CustomerToken.account_id))
            .where(
                CustomerToken.token_hash == token_hash(secret, "access", token),
                CustomerToken.kind == "access",
            )
        ).first()
    if found is None:
        return AccessCheck(None, "invalid")
    row, login = found
    if row.revoked_at is not None or row.login_epoch != login.session_epoch:
        return AccessCheck(None, "invalid")
    if _aware(row.expires_at) <= now:
        return AccessCheck(None, "expired")
    return AccessCheck(Customer(row.account_id, login.email, row.family_id))


def refresh(db: str, secret: str, lifetimes: TokenLifetimes, token: str) -> RefreshOutcome:
    """Spend a refresh token for a new pair in its family (rotation). A spent one given
    again ends the family (reuse detection); so does a new password since sign-in."""
    if not looks_like(token, "refresh"):
        return RefreshOutcome(None, "invalid")
    now = datetime.now(UTC)
    hashed = token_hash(secret, "refresh", token)
    with session_scope(db) as session:
        # One conditional UPDATE spends it: of two concurrent refreshes with the same
        # token exactly one gets the row, the other sees it spent (and that is reuse).
        spent = session.exec(
            update(CustomerToken)
            .where(
                col(CustomerToken.token_hash) == hashed,
                col(CustomerToken.kind) == "refresh",
                col(CustomerToken.used_at).is_(None),
                col(CustomerToken.revoked_at).is_(None),
                col(CustomerToken.expires_at) > now,
            )
            .values(used_at=now)
            .returning(
                col(CustomerToken.account_id),
                col(CustomerToken.family_id),
                col(CustomerToken.login_epoch),
                col(CustomerToken.family_expires_at),
            )
        ).all()
        if spent:
            account_id, family_id, epoch, family_expires = spent[0]
            login = session.get(WebLogin, account_id)
            if login is None or login.session_epoch != epoch:
                _revoke_family(session, family_id, now)
                session.commit()
                return RefreshOutcome(None, "revoked")
            issued, rows = _pair(
                secret, lifetimes, account_id, family_id, epoch, _aware(family_expires), now
            )
            session.add_all(rows)
            session.commit()
            return RefreshOutcome(issued)
        session.rollback()
        row = session.get(CustomerToken, hashed)
        if row is None or row.kind != "refresh":
            return RefreshOutcome(None, "invalid")
        if row.revoked_at is not None:
            return RefreshOutcome(None, "revoked")
        if row.used_at is not None:
            ended = _revoke_family(session, row.family_id, now)
            session.commit()
            log.warning(
                "a spent refresh token was presented again: its sign-in is ended",
                extra={
                    "event": "customer_refresh_reused",
                    "account_id": row.account_id,
                    "family_id": row.family_id,
                    "tokens_revoked": ended,
                },
            )
            return RefreshOutcome(None, "reused")
        return RefreshOutcome(None, "expired")


def _revoke_family(session: Session, family_id: str, now: datetime) -> int:
    result = session.exec(
        update(CustomerToken)
        .where(col(CustomerToken.family_id) == family_id, col(CustomerToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount or 0)


def revoke(db: str, secret: str, token: str, *, all_devices: bool = False) -> int:
    """End the family of ``token`` (an access or a refresh token, live or spent); with
    ``all_devices`` every family of its account, if the token is still live. Returns the
    sign-ins ended (0 for a token that is unknown or already revoked)."""
    now = datetime.now(UTC)
    kinds: tuple[Kind, ...] = ("access", "refresh")
    candidates = [token_hash(secret, kind, token) for kind in kinds if looks_like(token, kind)]
    if not candidates:
        return 0
    with session_scope(db) as session:
        row = session.get(CustomerToken, candidates[0])
        if row is None or row.revoked_at is not None:
            return 0
        live = row.used_at is None and _aware(row.expires_at) > now
        if all_devices and live:
            ended = _revoke_account(session, row.account_id, now)
        else:
            ended = 1 if _revoke_family(session, row.family_id, now) else 0
        session.commit()
        return ended


def _revoke_account(session: Session, account_id: str, now: datetime) -> int:
    families = session.exec(
        update(CustomerToken)
        .where(
            col(CustomerToken.account_id) == account_id,
            col(CustomerToken.revoked_at).is_(None),
            col(CustomerToken.expires_at) > now,
        )
        .values(revoked_at=now)
        .returning(col(CustomerToken.family_id))
    ).all()
    return len({family for (family,) in families})


def revoke_account(db: str, account_id: str) -> int:
    """End every sign-in of the account's mobile apps; returns how many were live."""
    now = datetime.now(UTC)
    with session_scope(db) as session:
        ended = _revoke_account(session, account_id, now)
        session.commit()
    return ended
