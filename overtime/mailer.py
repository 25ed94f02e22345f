"""Emails: Jinja2 templates (German and English, plain text and HTML) and SMTP.

Every email the product sends goes out through :func:`send`: the customers' notices and
sign-in codes, and the finance team's close report. What a notice says is built in
:mod:`overtime.notices`; this module renders templates and talks to the relay.

A template ``templates/email/<kind>.<locale>.j2`` defines three blocks: ``subject``,
``text`` and ``html``; the HTML block is wrapped in ``_layout.html.j2``, which adds the
legal footer (Impressum) from the settings. HTML blocks draw their call to action with
the global ``button(url, label)``; the text block writes "label: url" instead.

No email shows an internal account id: customers know their account by its email
address, and every link goes to an account-less entry point (``/app/extra-minutes``,
``/app/invoices``, ...) that redirects the signed-in customer to their own page.
"""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from overtime import formatting

if TYPE_CHECKING:
    from overtime.settings import Settings

TEMPLATE_DIR = Path(__file__).parent / "templates" / "email"
SUPPORTED_LOCALES = formatting.LANGUAGES

# Inline styles only: mail clients drop <style> blocks and external CSS.
_BUTTON = (
    '<p style="margin: 24px 0;"><a href="{url}" style="display: inline-block; '
    "background: #1f5fbf; color: #ffffff; text-decoration: none; font-weight: bold; "
    'padding: 12px 20px; border-radius: 6px;">{label}</a></p>'
)


def button(url: str, label: str) -> Markup:
    """The call to action of an HTML email: one link styled as a button."""
    return Markup(_BUTTON.format(url=escape(url), label=escape(label)))


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
_html_env.globals["button"] = button
_text_env = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=False,
    undefined=StrictUndefined,
    keep_trailing_newline=False,
)


@dataclass(frozen=True)
class RenderedEmail:
    """A customer email: plain text and HTML (see :func:`render`)."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class TextEmail:
    """An operators' email: plain text only (the finance team's close report)."""

    subject: str
    text: str


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str
    subtype: str


def sender(settings: Settings) -> str:
    """``Safina <billing@…>``: the product's name (or mail_sender_name) before the
    address of ``mail_from``."""
    address = parseaddr(settings.mail_from)[1] or settings.mail_from
    return formataddr((settings.mail_sender_name or settings.product_name, address))


def base_context(settings: Settings) -> dict[str, object]:
    """What every email shows whoever sends it: the product's name and the legal footer."""
    return {
        "product_name": settings.product_name,
        "legal": {
            "company": settings.legal_company,
            "address": settings.legal_address,
            "register": settings.legal_register,
            "vat_id": settings.legal_vat_id,
        },
    }


def app_url(settings: Settings, page: str) -> str:
    """An account-less link into the web app (``/app/<page>``), redirected on sign-in."""
    return f"{settings.public_url.rstrip('/')}/app/{page}"


def render(kind: str, locale: str, context: dict[str, object]) -> RenderedEmail:
    locale = formatting.language(locale)
    name = f"{kind}.{locale}.j2"
    plain, escaped = _text_env.get_template(name), _html_env.get_template(name)
    # Callers that predate the legal footer (or do not carry the settings) get it from
    # the process's settings: every email has it.
    values = {**_default_context(), **context, "locale": locale}
    subject = "".join(plain.blocks["subject"](plain.new_context(values))).strip()
    # A header is one line: a value with a line break must not start a second header.
    subject = " ".join(subject.split())
    text = "".join(plain.blocks["text"](plain.new_context(values))).strip()
    text = f"{text}\n\n-- \n{_text_footer(values, locale)}\n"
    body = Markup("".join(escaped.blocks["html"](escaped.new_context(values))).strip())
    # The subject is plain text here; the layout escapes it for the HTML part.
    html = _html_env.get_template("_layout.html.j2").render(**values, subject=subject, body=body)
    return RenderedEmail(subject=subject, text=text, html=html)


def _text_footer(values: dict[str, object], locale: str) -> str:
    legal = values["legal"]
    assert isinstance(legal, dict)
    vat = "USt-IdNr." if locale == "de" else "VAT ID"
    return f"{legal['company']} · {legal['address']}\n{legal['register']} · {vat} {legal['vat_id']}"


def _default_context() -> dict[str, object]:
    from overtime.settings import get_settings  # the mailer stays importable without env

    return base_context(get_settings())


def send(
    *,
    host: str,
    port: int,
    sender: str,
    to: str,
    email: RenderedEmail | TextEmail,
    message_id: str,
    headers: dict[str, str] | None = None,
    attachments: Sequence[Attachment] = (),
    timeout: float = 8,
) -> None:
    """Send one message: text and HTML for a customer email, text alone for a
    :class:`TextEmail`, with any attachments after them; raises on any SMTP failure.

    ``timeout`` stays below the sending activity's own (10 s for notices): a stalled
    relay fails the attempt, which is then retried, instead of holding a worker thread
    past the point Temporal gave up on it.

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
    if isinstance(email, RenderedEmail):
        message.add_alternative(email.html, subtype="html")
    for attachment in attachments:
        message.add_attachment(
            attachment.content,
            maintype=attachment.maintype,
            subtype=attachment.subtype,
            filename=attachment.filename,
        )
    with smtplib.SMTP(host, port, timeout=timeout) as smtp:
        smtp.send_message(message)
