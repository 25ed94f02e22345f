"""Customer emails: Jinja2 templates (German and English, plain text and HTML) and SMTP.

A template ``templates/email/<kind>.<locale>.j2`` defines three blocks: ``subject``,
``text`` and ``html``; the HTML block is wrapped in ``_layout.html.j2``.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

TEMPLATE_DIR = Path(__file__).parent / "templates" / "email"
SUPPORTED_LOCALES = ("de", "en")

# One template file holds the plain-text and the HTML version, and Jinja decides
# autoescaping per template when it compiles it: so each file is compiled twice. The
# subject and the text block come from the unescaped copy (a text/plain part and a
# Subject header show "Safina & Co" and "?a=1&b=2" as they are), the HTML block and the
# layout from the escaped one.
_html_env = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=select_autoescape(enabled_extensions=("html", "j2")),
    undefined=StrictUndefined,
    keep_trailing_newline=False,
)
_text_env = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=False,
    undefined=StrictUndefined,
    keep_trailing_newline=False,
)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def normalise_locale(locale: str) -> str:
    short = (locale or "").split("-")[0].split("_")[0].lower()
    return short if short in SUPPORTED_LOCALES else "de"


def format_money(cents: int, locale: str) -> str:
    """``1234`` → ``12,34 €`` (de) or ``€12.34`` (en); integer cents in, text out."""
    amount = Decimal(cents) / 100
    if normalise_locale(locale) == "de":
        whole, frac = f"{amount:,.2f}".split(".")
        return f"{whole.replace(',', '.')},{frac} €"
    return f"€{amount:,.2f}"


def format_minutes(seconds: int, locale: str) -> str:
    """Billed seconds as minutes with one decimal, the way an invoice line shows them."""
    minutes = (Decimal(seconds) / 60).quantize(Decimal("0.1"))
    text = f"{minutes:,}"
    return (
        text.replace(",", "X").replace(".", ",").replace("X", ".")
        if normalise_locale(locale) == "de"
        else text
    )


def format_period(start: datetime, end: datetime, timezone: str, locale: str) -> str:
    zone = ZoneInfo(timezone)
    fmt = "%d.%m.%Y %H:%M" if normalise_locale(locale) == "de" else "%Y-%m-%d %H:%M"
    return f"{start.astimezone(zone).strftime(fmt)} – {end.astimezone(zone).strftime(fmt)}"


def render(kind: str, locale: str, context: dict[str, object]) -> RenderedEmail:
    locale = normalise_locale(locale)
    name = f"{kind}.{locale}.j2"
    plain, escaped = _text_env.get_template(name), _html_env.get_template(name)
    values = {**context, "locale": locale}
    subject = "".join(plain.blocks["subject"](plain.new_context(values))).strip()
    # A header is one line: a value with a line break must not start a second header.
    subject = " ".join(subject.split())
    text = "".join(plain.blocks["text"](plain.new_context(values))).strip() + "\n"
    body = Markup("".join(escaped.blocks["html"](escaped.new_context(values))).strip())
    # The subject is plain text here; the layout escapes it for the HTML part.
    html = _html_env.get_template("_layout.html.j2").render(**values, subject=subject, body=body)
    return RenderedEmail(subject=subject, text=text, html=html)


def send(
    *,
    host: str,
    port: int,
    sender: str,
    to: str,
    email: RenderedEmail,
    message_id: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Send one multipart (text + HTML) message; raises on any SMTP failure.

    A non-ASCII address (``jürgen@example.de``) goes out with SMTPUTF8 when the relay
    offers it (``send_message`` asks for it); a relay without it raises
    :class:`smtplib.SMTPNotSupportedError`, which can never succeed for that address.
    """
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = email.subject
    message["Date"] = formatdate(localtime=False)
    # A stable Message-ID lets a mail system drop the copy a retried send might produce.
    message["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    # Below the activity timeout (10 s): a stalled relay fails the attempt, which is then
    # retried, instead of holding a worker thread past the point Temporal gave up on it.
    with smtplib.SMTP(host, port, timeout=8) as smtp:
        smtp.send_message(message)
