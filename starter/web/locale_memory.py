"""The page language a customer chose, remembered on the account (``account.locale``).

The emails read ``account.locale`` when they are sent, and every page of a signed-in
customer (error pages too) reads the session's language, which sign-in takes from the
account. So one choice, made on any page, holds for the pages, the next sign-in and the
next email:

* a signed-in customer follows ``?lang=de|en``: stored on the account at once;
* a language chosen before signing in (on the login page) is stored at sign-in;
* otherwise sign-in sets the session's language from the account.

The admin console is English and stores nothing.
"""

from __future__ import annotations

from sqlmodel import select

from overtime.db import session_scope
from overtime.models import Account
from starter.web.i18n import LANGUAGES


def remember(db: str, account_id: str, lang: str) -> None:
    """Store ``lang`` as the account's language (a no-op when it already is)."""
    if lang not in LANGUAGES:
        return
    with session_scope(db) as session:
        account = session.exec(select(Account).where(Account.account_id == account_id)).first()
        if account is not None and account.locale != lang:
            account.locale = lang
            session.add(account)
            session.commit()


def adopt(db: str, account_id: str, chosen: str | None) -> str | None:
    """At sign-in: store a language chosen before it, else return the account's own."""
    if chosen in LANGUAGES:
        remember(db, account_id, chosen)
        return chosen
    with session_scope(db) as session:
        account = session.exec(select(Account).where(Account.account_id == account_id)).first()
    return account.locale if account is not None and account.locale in LANGUAGES else None
