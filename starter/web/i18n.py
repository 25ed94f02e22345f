"""The customer pages' words, German (default) and English, and number/date formats.

A missing key is a bug, not a fallback: ``tests/test_web_units.py`` checks that both
languages have the same keys. The admin console is for operators and in English.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel.numbers import NumberFormatError, parse_decimal

from overtime import mailer
from starter.web.texts import merged_messages

LANGUAGES = ("de", "en")
DEFAULT_LANGUAGE = "de"
NBSP = "\u00a0"
# Inside Translator, "datetime" names its method; annotations there use this.
_DateTime = datetime

MESSAGES: dict[str, dict[str, str]] = merged_messages()


def pick_language(*candidates: str | None) -> str:
    for candidate in candidates:
        if candidate:
            short = candidate.split("-")[0].split("_")[0].lower()
            if short in LANGUAGES:
                return short
    return DEFAULT_LANGUAGE


class Translator:
    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
        self._messages = MESSAGES[self.lang]

    def __call__(self, key: str, **values: object) -> str:
        text = self._messages[key]
        return text.format(**values) if values else text

    def label(self, prefix: str, value: str | None, **values: object) -> str:
        """A word for a code from the data (a notice kind, a status); the code itself
        when there is no word for it yet."""
        key = f"{prefix}{value}"
        return self(key, **values) if key in self._messages else str(value)

    def money(self, cents: int | None) -> str:
        """``20,00 €`` with a no-break space: an amount never wraps between number and sign
        (the emails' plain text keeps mailer's ordinary space)."""
        return "–" if cents is None else mailer.format_money(cents, self.lang).replace(" ", NBSP)

    def minutes(self, seconds: int) -> str:
        return mailer.format_minutes(seconds, self.lang)

    def whole_minutes(self, minutes: int) -> str:
        text = f"{minutes:,}"
        return text.replace(",", ".") if self.lang == "de" else text

    def percent(self, value: float) -> str:
        text = f"{value:.0f}" if value >= 10 or value == 0 else f"{value:.1f}"
        return text.replace(".", ",") if self.lang == "de" else text

    def minutes_floor(self, seconds: int) -> str:
        """Minutes with one decimal, rounded down (what a EUR limit buys at least)."""
        tenths = seconds // 6
        text = f"{tenths // 10:,}.{tenths % 10}"
        return (
            text.replace(",", "X").replace(".", ",").replace("X", ".")
            if self.lang == "de"
            else text
        )

    def datetime(self, value: datetime, zone: ZoneInfo) -> str:
        fmt = "%d.%m.%Y %H:%M" if self.lang == "de" else "%Y-%m-%d %H:%M"
        return value.astimezone(zone).strftime(fmt)

    def period(self, start: _DateTime, end: _DateTime, zone: ZoneInfo) -> str:
        return f"{self.datetime(start, zone)} – {self.datetime(end, zone)}"

    def parse_euros(self, text: str) -> int | None:
        return parse_euros(text, self.lang)

    def parse_minutes(self, text: str) -> int | None:
        return parse_minutes(text, self.lang)

    def number(self, value: float, decimals: int = 0) -> str:
        """``1234.5`` → ``1.234,5`` / ``1,234.5`` (chart ticks, tables)."""
        text = f"{value:,.{decimals}f}"
        return (
            text.replace(",", "X").replace(".", ",").replace("X", ".")
            if self.lang == "de"
            else text
        )

    def day(self, value: date) -> str:
        """A day without the year, as chart labels show it: ``01.11.`` / ``1 Nov``."""
        return value.strftime("%d.%m.") if self.lang == "de" else f"{value.day} {value:%b}"

    def euros_input(self, cents: int | None) -> str:
        """Cents as the number a form field shows: ``5000`` → ``50,00`` / ``50.00``."""
        if cents is None:
            return ""
        text = f"{Decimal(cents) / 100:.2f}"
        return text.replace(".", ",") if self.lang == "de" else text


# The page language's number format (Babel's CLDR data); the other language's is tried
# only when the text is malformed in the page's, so "1.000" on a German page is a thousand.
_LOCALES = {"de": "de_DE", "en": "en_IE"}
# Spaces people type or paste between thousands ("1 000", "1\u00a0000", "1\u202f000").
_SPACES = re.compile(r"[\s\u00a0\u202f]+")
_AMOUNT = re.compile(r"[0-9][0-9.,]*")
_CURRENCY = re.compile(r"(€|eur|euro|euros)", re.IGNORECASE)
# Minutes are whole: a dot, comma or space can only group thousands ("1.000" = 1000 min).
_WHOLE = re.compile(r"[0-9]{1,3}(?:([.,])[0-9]{3})?(?:\1[0-9]{3})*|[0-9]+")


def _decimal(text: str, lang: str) -> Decimal | None:
    try:
        value = parse_decimal(text, locale=_LOCALES[lang], strict=True)
    except NumberFormatError:
        return None
    return value if value.is_finite() else None


def parse_euros(text: str, lang: str = DEFAULT_LANGUAGE) -> int | None:
    """A EUR amount as typed on a page in ``lang`` → cents; None if it is not one.

    German: ``"1.000"``, ``"1.000,50"``, ``"1 000"``, ``"1.000 €"``; English:
    ``"1,000.50"``. Read in the page's language first, the other one only when the text is
    malformed there (``"12.50"`` on a German page). More than two decimals, a sign or
    anything else: None, never a guess.
    """
    lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
    cleaned = _SPACES.sub("", _CURRENCY.sub("", text))
    if not _AMOUNT.fullmatch(cleaned):
        return None  # no sign, no exponent ("1e5"), no other digits than 0-9
    other = "en" if lang == "de" else "de"
    value = _decimal(cleaned, lang)
    if value is None:
        value = _decimal(cleaned, other)
    if value is None or value < 0 or value.as_tuple().exponent < -2:  # type: ignore[operator]
        return None
    return int(value * 100)


def parse_minutes(text: str, lang: str = DEFAULT_LANGUAGE) -> int | None:
    """Whole minutes: ``"1000"``, ``"1.000"``, ``"1,000"``, ``"1 000"``, ``"20 Min."``."""
    del lang  # the same in both languages: minutes have no decimals to mistake
    cleaned = _SPACES.sub(" ", text).strip()
    cleaned = re.sub(r"\s*(min\.?|minuten|minutes)$", "", cleaned, flags=re.IGNORECASE)
    cleaned = cleaned.replace(" ", "")
    if not cleaned.isascii() or not _WHOLE.fullmatch(cleaned):
        return None
    return int(cleaned.replace(".", "").replace(",", ""))
