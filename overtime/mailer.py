"""Customer emails: Jinja2 templates (German and English, plain text and HTML) and SMTP.

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
    subject: str
    text: str
    html: str


def normalise_locale(locale: str) -> str:
    """``"de"`` or ``"en"``: the email's language (see :func:`formatting.language`)."""
    return formatting.language(locale)


# The names the email contexts are built with (activities.notifications, the admin's
# resend); the formats themselves are overtime.formatting's, shared with the web app,
# the invoice lines and the CLI.
format_money = formatting.money
format_minutes = formatting.minutes
format_limit = formatting.limit
format_when = formatting.date_time
format_period = formatting.period
usage_of_limit = formatting.usage_of_limit


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
    locale = normalise_locale(locale)
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
