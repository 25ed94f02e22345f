"""The sign-in throttle as an attacker meets it, against the running API.

* A peer that is not a trusted proxy cannot dodge the per-address limit by rotating
  ``X-Forwarded-For`` (it is not believed): 429 with ``Retry-After``.
* Nobody can lock the owner out: an app that trusts the test client as its proxy
  (``trusted_proxies=["127.0.0.1"]``) sees every forged address as a distinct client;
  after many failures from many of them the owner still signs in, with the password and
  the code emailed to them (never sent for a wrong password).
* The answer to an attacked account is slowed, progressively and capped; every failure
  and the code-required state are logged.
* Someone who has the password gains nothing either: the answer does not wait for (or
  depend on) the code mail, concurrent code guesses cannot overrun the attempts, and a
  used-up code buys no fresh one before the resend limit (and a few per hour at most).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlmodel import select
from temporalio.client import Client

from devstack.mail_catcher import CaughtMail, MailCatcher
from overtime import mailer
from overtime.db import init_db, session_scope
from overtime.models import WebLoginCode
from overtime.settings import Settings
from starter.web.config import WebSettings
from starter.web.login import pending_code_mails
from starter.web.security import (
    Throttle,
    ThrottleStatus,
    address_key,
    email_digest,
    login_key,
)
from tests.conftest import Api, WorkerControl, start_api, stop_api

PASSWORD = "a long enough password"
LOGGER = "starter.web.login"


@dataclass
class Proxied:
    api: Api
    web: WebSettings
    app: object


@pytest.fixture(scope="module")
async def proxied(
    settings: Settings, temporal_client: Client, worker: WorkerControl
) -> AsyncIterator[Proxied]:
    """The API behind a "proxy" (the test client), with small delays and an admin of its
    own (failures are counted per email in the shared database)."""
    trusted = settings.model_copy(update={"trusted_proxies": ["127.0.0.1"]})
    server, task, api = await start_api(trusted, temporal_client)
    web = WebSettings(
        admin_email=f"admin-{uuid.uuid4().hex[:8]}@overtime.local",
        admin_password="the admin's own password",
        web_login_max_failures=5,
        web_login_max_failures_per_ip=30,
        web_login_delay_after_failures=2,
        web_login_delay_seconds=0.1,
        web_login_delay_max_seconds=0.4,
    )
    app = server.config.app
    app.state.web_settings = web  # read per request by the session middleware and /login
    try:
        yield Proxied(api, web, app)
    finally:
        await stop_api(server, task, api)


async def customer(api: Api) -> tuple[str, str]:
    account_id = await api.create_account("starter", locale="en")
    answer = await api.admin.put(f"/v1/accounts/{account_id}/password", json={"password": PASSWORD})
    assert answer.status_code == 204, answer.text
    return account_id, f"{account_id}@example.com"


def client_for(api: Api, local_address: str | None = None) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=local_address) if local_address else None
    return httpx.AsyncClient(
        base_url=api.base_url, timeout=30, follow_redirects=False, transport=transport
    )


async def csrf_of(client: httpx.AsyncClient, path: str = "/login") -> str:
    page = await client.get(path)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


async def post_login(
    client: httpx.AsyncClient, data: dict[str, str], forwarded_for: str | None = None
) -> httpx.Response:
    token = await csrf_of(client)
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return await client.post("/login", data={"csrf_token": token, **data}, headers=headers)


def address() -> str:
    return f"198.51.{random.randrange(256)}.{random.randrange(1, 255)}"


def records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


async def code_mails(mail: MailCatcher, to: str) -> list[CaughtMail]:
    """The code mails to ``to`` once every mail under way was sent (they go out after the
    answer, in the background)."""
    await pending_code_mails()
    return [m for m in mail.to(to) if m.header("X-Overtime-Notice") == "login_code"]


async def code_in(mail: MailCatcher, to: str) -> str:
    mails = await code_mails(mail, to)
    assert mails, f"no sign-in code sent to {to}"
    found = re.search(r"\b(\d{6})\b", mails[-1].text())
    assert found, mails[-1].text()
    return found.group(1)


async def reach_code_state(proxied: Proxied, email: str) -> None:
    """Wrong passwords from many addresses until the account needs the emailed code."""
    async with client_for(proxied.api) as attacker:
        for _ in range(proxied.web.web_login_max_failures):
            answer = await post_login(
                attacker, {"email": email, "password": "wrong guess"}, address()
            )
            assert answer.status_code == 401


def comparable(page: httpx.Response) -> tuple[int, str]:
    """The answer without what differs between any two browsers (their CSRF tokens)."""
    return page.status_code, re.sub(r'"[A-Za-z0-9_-]{43}"', '"-"', page.text)


async def test_rotating_forwarded_for_from_an_untrusted_peer_changes_nothing(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """35 failures, each claiming another address: the peer is not a trusted proxy, so
    they all count against it (a loopback address of its own, so the other tests' budget
    on 127.0.0.1 stays untouched)."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    limit = WebSettings().web_login_max_failures_per_ip
    peer = f"127.{random.randrange(1, 255)}.{random.randrange(256)}.{random.randrange(1, 255)}"
    account_id, email = await customer(api)
    statuses: list[int] = []
    async with client_for(api, peer) as attacker:
        for i in range(35):
            answer = await post_login(
                attacker,
                {"email": f"guess-{i}-{uuid.uuid4().hex[:6]}@example.com", "password": "guess"},
                forwarded_for=f"203.0.113.{i + 1}",
            )
            statuses.append(answer.status_code)
        assert statuses[:limit] == [401] * limit
        assert statuses[limit:] == [429] * (35 - limit)
        retry_after = int(answer.headers["Retry-After"])
        assert 1 <= retry_after <= WebSettings().web_login_window_seconds
        # From that address even the right password waits for the window...
        blocked = await post_login(attacker, {"email": email, "password": PASSWORD})
        assert blocked.status_code == 429
    # ...but the owner, elsewhere, is not affected.
    async with client_for(api) as owner:
        signed_in = await post_login(owner, {"email": email, "password": PASSWORD})
        assert signed_in.status_code == 303
        assert (await owner.get(f"/app/a/{account_id}")).status_code == 200
    failed = records(caplog, "web_login_failed")
    assert {r.client for r in failed} == {peer}  # type: ignore[attr-defined]
    assert {r.reason for r in failed} == {"unknown_email", "address_throttled"}  # type: ignore[attr-defined]


async def test_a_victim_cannot_be_locked_out(
    proxied: Proxied, mail: MailCatcher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    api = proxied.api
    account_id, email = await customer(api)
    statuses: list[int] = []
    async with client_for(api) as attacker:
        for _ in range(12):
            answer = await post_login(
                attacker, {"email": email, "password": "wrong guess"}, forwarded_for=address()
            )
            statuses.append(answer.status_code)
    # Never 429 (every address is another one); from the fifth failure on, the code form,
    # as for the right password (which must not show).
    assert statuses == [401] * 5 + [200] * 7
    assert 'name="code"' in answer.text
    assert await code_mails(mail, email) == []  # wrong passwords send no mail, however many
    failed = [r for r in records(caplog, "web_login_failed") if r.email_hash == email_digest(email)]  # type: ignore[attr-defined]
    assert len(failed) == 12
    assert len({r.client for r in failed}) > 1  # type: ignore[attr-defined]
    assert all(r.reason == "wrong_password" for r in failed)  # type: ignore[attr-defined]
    for record in failed:
        assert email not in record.getMessage() and email not in str(vars(record).values())
    required = [
        r
        for r in records(caplog, "web_login_code_required")
        if r.email_hash == email_digest(email)  # type: ignore[attr-defined]
    ]
    assert len(required) == 1 and required[0].failures == 5  # type: ignore[attr-defined]

    async with client_for(api) as owner, client_for(api) as phone:
        asked = await post_login(owner, {"email": email, "password": PASSWORD}, address())
        assert asked.status_code == 200 and 'name="code"' in asked.text
        assert (await owner.get(f"/app/a/{account_id}")).status_code == 303  # not yet
        code = await code_in(mail, email)
        assert len(await code_mails(mail, email)) == 1
        # A second sign-in within a minute sends no second mail (the code still holds).
        also = await post_login(phone, {"email": email, "password": PASSWORD}, address())
        assert also.status_code == 200 and len(await code_mails(mail, email)) == 1
        wrong = "111111" if code != "111111" else "222222"
        refused = await post_login(owner, {"code": wrong}, address())
        assert refused.status_code == 401 and 'name="code"' in refused.text
        done = await post_login(owner, {"code": code}, address())
        assert done.status_code == 303 and done.headers["location"] == f"/app/a/{account_id}"
        assert (await owner.get(f"/app/a/{account_id}")).status_code == 200
        # Single use: the same code does not open a second session.
        again = await post_login(phone, {"code": code}, address())
        assert again.status_code == 401
        assert (await phone.get(f"/app/a/{account_id}")).status_code == 303
    wrong_codes = [r for r in records(caplog, "web_login_failed") if r.reason == "wrong_code"]  # type: ignore[attr-defined]
    assert len(wrong_codes) == 2


async def test_in_the_code_state_a_wrong_password_answers_as_the_right_one(
    proxied: Proxied, mail: MailCatcher
) -> None:
    """Once the account needs a code, the password answer must not tell whether the
    password was right (no oracle for the attacker who caused that state): the same code
    form either way; a mail only for the right one; a code after a wrong password always
    fails, even the owner's real one, with the answer of a wrong code."""
    api = proxied.api
    account_id, email = await customer(api)
    await reach_code_state(proxied, email)
    async with client_for(api) as attacker, client_for(api) as owner:
        wrong = await post_login(attacker, {"email": email, "password": "still wrong"}, address())
        assert await code_mails(mail, email) == []  # a wrong password sends nothing
        right = await post_login(owner, {"email": email, "password": PASSWORD}, address())
        assert wrong.status_code == right.status_code == 200
        assert 'name="code"' in wrong.text
        assert comparable(wrong) == comparable(right)
        assert ("set-cookie" in wrong.headers) == ("set-cookie" in right.headers)
        [sent] = await code_mails(mail, email)
        code = await code_in(mail, email)
        # Not in the subject (lock-screen previews show it): no digit at all there.
        assert re.search(r"\d", sent.subject) is None, sent.subject
        # The attacker who saw the code form cannot finish with any code, not even the
        # one emailed to the owner; the answer is that of a wrong code.
        stolen = await post_login(attacker, {"code": code}, address())
        other = "111111" if code != "111111" else "222222"
        mistyped = await post_login(owner, {"code": other}, address())
        assert stolen.status_code == mistyped.status_code == 401
        assert comparable(stolen) == comparable(mistyped)
        assert (await attacker.get(f"/app/a/{account_id}")).status_code == 303
        # The attacker's tries cost the owner's code nothing: it still works.
        done = await post_login(owner, {"code": code}, address())
        assert done.status_code == 303 and done.headers["location"] == f"/app/a/{account_id}"
        assert (await owner.get(f"/app/a/{account_id}")).status_code == 200


async def timed_post(
    client: httpx.AsyncClient, data: dict[str, str], forwarded_for: str
) -> tuple[httpx.Response, float]:
    """The POST alone, timed (not the GET for its CSRF token)."""
    token = await csrf_of(client)
    started = time.monotonic()
    answer = await client.post(
        "/login", data={"csrf_token": token, **data}, headers={"X-Forwarded-For": forwarded_for}
    )
    return answer, time.monotonic() - started


@asynccontextmanager
async def stalled_relay() -> AsyncIterator[tuple[int, asyncio.Event, asyncio.Event]]:
    """An SMTP relay that takes the connection and never greets (a hung relay) until
    released, then hangs up: (port, connected, release)."""
    connected, release = asyncio.Event(), asyncio.Event()

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], connected, release
    finally:
        release.set()
        server.close()
        await server.wait_closed()


def codes_of(proxied: Proxied, email: str) -> list[WebLoginCode]:
    db = proxied.app.state.settings.resolved_database_url()  # type: ignore[attr-defined]
    with session_scope(db) as session:
        return list(
            session.exec(
                select(WebLoginCode).where(
                    WebLoginCode.login_key == login_key(proxied.web.web_session_secret, email)
                )
            ).all()
        )


async def test_the_code_page_comes_before_the_mail_and_an_unsent_code_is_sent_again(
    proxied: Proxied, mail: MailCatcher, caplog: pytest.LogCaptureFixture
) -> None:
    """The right password's answer does not wait for the mail (a hung relay would hold a
    synchronous send for the mailer's 8 s timeout) and looks like a wrong password's;
    when the mail then fails, the failure is logged, the code nobody got is void, and
    signing in again at once (well within the resend window) emails a fresh one."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    api, app = proxied.api, proxied.app
    account_id, email = await customer(api)
    await reach_code_state(proxied, email)
    settings = app.state.settings  # type: ignore[attr-defined]
    async with stalled_relay() as (port, connected, release):
        # Read per request by /login (and handed to the mail task as it was then).
        app.state.settings = settings.model_copy(update={"smtp_port": port})  # type: ignore[attr-defined]
        try:
            async with client_for(api) as attacker, client_for(api) as owner:
                wrong, wrong_took = await timed_post(
                    attacker, {"email": email, "password": "still wrong"}, address()
                )
                right, right_took = await timed_post(
                    owner, {"email": email, "password": PASSWORD}, address()
                )
        finally:
            app.state.settings = settings  # type: ignore[attr-defined]
        assert wrong.status_code == right.status_code == 200 and 'name="code"' in right.text
        assert comparable(wrong) == comparable(right)
        # The mail is under way (the relay has its connection and has said nothing), so
        # the answer did not wait for it.
        await asyncio.wait_for(connected.wait(), 5)
        # A page that waited for the mail would take the mailer's SMTP timeout (the relay
        # never answers until released): half of it tells the two apart on a loaded machine.
        mail_timeout = inspect.signature(mailer.send).parameters["timeout"].default
        assert right_took < mail_timeout / 2, right_took
        assert right_took < wrong_took + mail_timeout / 2, (right_took, wrong_took)
        assert records(caplog, "web_login_code_unsent") == []
        release.set()  # the relay hangs up: the send fails
        await pending_code_mails()
    [unsent] = [
        r
        for r in records(caplog, "web_login_code_unsent")
        if r.email_hash == email_digest(email)  # type: ignore[attr-defined]
    ]
    assert unsent.levelno == logging.WARNING and unsent.error  # type: ignore[attr-defined]
    assert await code_mails(mail, email) == []
    assert codes_of(proxied, email) == []  # void: it holds back no resend
    async with client_for(api) as owner:
        asked = await post_login(owner, {"email": email, "password": PASSWORD}, address())
        assert asked.status_code == 200 and 'name="code"' in asked.text
        assert len(await code_mails(mail, email)) == 1
        done = await post_login(owner, {"code": await code_in(mail, email)}, address())
        assert done.status_code == 303 and done.headers["location"] == f"/app/a/{account_id}"


async def test_concurrent_code_guesses_take_no_more_than_the_allowed_attempts(
    proxied: Proxied, mail: MailCatcher, caplog: pytest.LogCaptureFixture
) -> None:
    """Someone with the password guesses codes: 20 at once take at most the code's
    attempts (each is counted before it is compared), none signs in; each guess waits
    the account's delay like a password; once the code is used up, signing in with the
    password again within the resend window sends no new code, and beyond the resend
    limit at most ``web_login_code_max_per_window`` codes go out (the last one sent still
    works)."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    api, web = proxied.api, proxied.web
    max_attempts = web.web_login_code_max_attempts
    account_id, email = await customer(api)
    await reach_code_state(proxied, email)
    async with client_for(api) as owner:
        asked = await post_login(owner, {"email": email, "password": PASSWORD}, address())
        assert asked.status_code == 200
        code = await code_in(mail, email)
        guesses = [f"{(int(code) + i) % 10**6:06d}" for i in range(1, 22)]
        # The code step waits the account's delay too (6 failures now: the cap).
        first, took = await timed_post(owner, {"code": guesses[0]}, address())
        assert first.status_code == 401
        throttle = Throttle("s", 5, 30, 900, 2, 0.1, 0.4)
        wait = throttle.delay(ThrottleStatus(6, 0, 1))
        assert wait == 0.4 and took >= wait - 0.01, took
        token = await csrf_of(owner)
        answers = await asyncio.gather(
            *(
                owner.post(
                    "/login",
                    data={"csrf_token": token, "code": guess},
                    headers={"X-Forwarded-For": address()},
                )
                for guess in guesses[1:]
            )
        )
        assert [a.status_code for a in answers] == [401] * 20
        [row] = codes_of(proxied, email)
        assert row.attempts == max_attempts  # not 21: concurrent guesses did not overrun it
        # Used up: even the right code no longer signs in.
        late = await post_login(owner, {"code": code}, address())
        assert late.status_code == 401
        assert (await owner.get(f"/app/a/{account_id}")).status_code == 303
        # The password again, at once: the code page, but no new code to guess at.
        again = await post_login(owner, {"email": email, "password": PASSWORD}, address())
        assert again.status_code == 200 and 'name="code"' in again.text
        assert len(await code_mails(mail, email)) == 1
        held = [
            r for r in records(caplog, "web_login_code_held") if r.email_hash == email_digest(email)
        ]  # type: ignore[attr-defined]
        assert len(held) == 1
    # Without the resend limit, the per-window cap still holds.
    cap = 3
    proxied.app.state.web_settings = web.model_copy(  # type: ignore[attr-defined]
        update={"web_login_code_resend_seconds": 0, "web_login_code_max_per_window": cap}
    )
    try:
        async with client_for(api) as owner:
            for _ in range(cap + 1):
                asked = await post_login(owner, {"email": email, "password": PASSWORD}, address())
                assert asked.status_code == 200 and 'name="code"' in asked.text
                await pending_code_mails()
            assert len(await code_mails(mail, email)) == cap
            # Beyond the cap the owner waits for no new code: the last one sent still works.
            done = await post_login(owner, {"code": await code_in(mail, email)}, address())
            assert done.status_code == 303 and done.headers["location"] == f"/app/a/{account_id}"
    finally:
        proxied.app.state.web_settings = web  # type: ignore[attr-defined]


@pytest.mark.parametrize("locale", ["de", "en"])
def test_the_code_is_not_in_the_subject(locale: str) -> None:
    context = {"product_name": "Safina", "account_id": "acct-1", "code": "481516"}
    context |= {"minutes": 10, "login_url": "https://overtime.example/login"}
    email = mailer.render("login_code", locale, context)
    assert re.search(r"\d", email.subject) is None, email.subject
    assert "481516" in email.text and "481516" in email.html  # the body still has it


async def test_an_ipv6_client_is_one_address_per_64(proxied: Proxied) -> None:
    """Rotating addresses inside one IPv6 /64 (which one host usually has to itself)
    does not escape the per-address limit."""
    site, subnet = random.randrange(1, 0xFFFF), random.randrange(1, 0xFFFE)
    prefix = f"2001:db8:{site:x}:{subnet:x}"
    limit = proxied.web.web_login_max_failures_per_ip
    statuses: list[int] = []
    async with client_for(proxied.api) as attacker:
        for i in range(limit + 2):
            answer = await post_login(
                attacker,
                {"email": f"guess-{uuid.uuid4().hex[:8]}@example.com", "password": "guess"},
                forwarded_for=f"{prefix}:{i:x}:{random.randrange(0xFFFF):x}::{i + 1:x}",
            )
            statuses.append(answer.status_code)
        assert statuses == [401] * limit + [429] * 2
        # The next /64 is another client.
        elsewhere = await post_login(
            attacker,
            {"email": f"guess-{uuid.uuid4().hex[:8]}@example.com", "password": "guess"},
            forwarded_for=f"2001:db8:{site:x}:{subnet + 1:x}::1",
        )
        assert elsewhere.status_code == 401


def test_address_keys(tmp_path: Path) -> None:
    assert address_key("203.0.113.7") == "203.0.113.7"
    assert address_key("203.0.113.8") != address_key("203.0.113.7")
    same = {"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:DB8:1:2:0:0:0:7"}
    assert {address_key(ip) for ip in same} == {"2001:db8:1:2::/64"}
    assert address_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert address_key("::ffff:203.0.113.7") == "203.0.113.7"  # IPv4 over IPv6: the IPv4
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("unknown") == "unknown"
    # And in the database: failures from a /64 count together, the next /64 is apart.
    db = f"sqlite:///{tmp_path / 'throttle.db'}"
    init_db(db)
    throttle = Throttle("s", 5, 3, 900, 3, 0.25, 4.0)
    for i in range(3):
        throttle.failed(db, f"u{i}@example.com", f"2001:db8:1:2::{i + 1:x}")
    assert throttle.address_blocked(throttle.status(db, "x@example.com", "2001:db8:1:2:a::1"))
    assert not throttle.address_blocked(throttle.status(db, "x@example.com", "2001:db8:1:3::1"))


async def test_the_admin_cannot_be_locked_out_either(proxied: Proxied, mail: MailCatcher) -> None:
    api, web = proxied.api, proxied.web
    async with client_for(api) as attacker:
        for i in range(6):
            answer = await post_login(
                attacker, {"email": web.admin_email, "password": "nope"}, address()
            )
            assert answer.status_code == (401 if i < 5 else 200)
    assert await code_mails(mail, web.admin_email) == []
    async with client_for(api) as admin:
        asked = await post_login(
            admin, {"email": web.admin_email, "password": web.admin_password}, address()
        )
        assert asked.status_code == 200 and 'name="code"' in asked.text
        done = await post_login(admin, {"code": await code_in(mail, web.admin_email)}, address())
        assert done.status_code == 303 and done.headers["location"] == "/admin"
        assert (await admin.get("/admin")).status_code == 200


async def test_the_delay_grows_and_is_capped(proxied: Proxied) -> None:
    api, web = proxied.api, proxied.web
    _, email = await customer(api)
    elapsed: list[float] = []
    async with client_for(api) as attacker:
        for i in range(8):
            token = await csrf_of(attacker)
            started = time.monotonic()
            answer = await attacker.post(
                "/login",
                data={"csrf_token": token, "email": email, "password": "wrong"},
                headers={"X-Forwarded-For": address()},
            )
            elapsed.append(time.monotonic() - started)
            assert answer.status_code == (401 if i < 5 else 200)  # then: the code form
    throttle = Throttle("s", 5, 30, 900, 2, 0.1, 0.4)
    expected = [throttle.delay(ThrottleStatus(n, 0, 1)) for n in range(8)]
    assert expected == [0.0, 0.0, 0.1, 0.2, 0.4, 0.4, 0.4, 0.4]
    for took, wait in zip(elapsed, expected, strict=True):
        assert took >= wait - 0.01, (elapsed, expected)
    # Uncapped, the eighth answer would wait 0.1 * 2**5 = 3.2 s.
    assert elapsed[-1] < web.web_login_delay_max_seconds + 1.5, elapsed


def test_delay_steps() -> None:
    throttle = Throttle("s", 5, 30, 900, 3, 0.25, 4.0)
    delays = [throttle.delay(ThrottleStatus(n, 0, 1)) for n in range(12)]
    assert delays[:3] == [0.0, 0.0, 0.0]
    assert delays[3:8] == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert set(delays[8:]) == {4.0}
    assert Throttle("s", 5, 30, 900, 3, 0.25, 4.0).delay(ThrottleStatus(10**6, 0, 1)) == 4.0


async def test_secure_cookie_when_https_only(proxied: Proxied) -> None:
    proxied.app.state.web_settings = proxied.web.model_copy(update={"web_https_only": True})  # type: ignore[attr-defined]
    try:
        async with client_for(proxied.api) as client:
            page = await client.get("/login")
            assert "; secure" in page.headers["set-cookie"].lower()
    finally:
        proxied.app.state.web_settings = proxied.web  # type: ignore[attr-defined]
