"""The customer pages' words, German (default) and English, as the templates call them.

A missing key is a bug, not a fallback: ``tests/test_web_security.py`` checks that both
languages have the same keys. The admin console is for operators and in English.
Numbers, money, dates and reading amounts are ``overtime.formatting``'s; the Translator
only binds them to the page's language for the templates (``t.money(cents)``).
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from overtime import formatting
from overtime.formatting import AmountError
from starter.web.texts import merged_messages

LANGUAGES = ("de", "en")
DEFAULT_LANGUAGE = "de"
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
        (the emails' plain text keeps the ordinary space)."""
        return "–" if cents is None else formatting.money(cents, self.lang, no_break=True)

    def minutes(self, seconds: int) -> str:
        return formatting.minutes(seconds, self.lang)

    def whole_minutes(self, minutes: int) -> str:
        return formatting.whole_number(minutes, self.lang)

    def percent(self, value: float) -> str:
        return formatting.percent(value, self.lang)

    def minutes_floor(self, seconds: int) -> str:
        """Minutes with one decimal, rounded down (what a EUR limit buys at least)."""
        return formatting.minutes_floor(seconds, self.lang)

    def datetime(self, value: datetime, zone: ZoneInfo) -> str:
        return formatting.date_time(value, zone, self.lang)

    def period(self, start: _DateTime, end: _DateTime, zone: ZoneInfo) -> str:
        return formatting.period(start, end, zone, self.lang)

    def parse_euros(self, text: str) -> int | None:
        return parse_euros(text, self.lang)

    def parse_minutes(self, text: str) -> int | None:
        return parse_minutes(text, self.lang)

    def number(self, value: float, decimals: int = 0) -> str:
        """``1234.5`` → ``1.234,5`` / ``1,234.5`` (chart ticks, tables)."""
        return formatting.number(value, self.lang, decimals)

    def day(self, value: date) -> str:
        """A day without the year, as chart labels show it: ``01.11.`` / ``1 Nov``."""
        return formatting.day(value, self.lang)

    def euros_input(self, cents: int | None) -> str:
        """Cents as the number a form field shows: ``5000`` → ``50,00`` / ``50.00``."""
        return formatting.amount_input(cents, self.lang)


def parse_euros(text: str, lang: str = DEFAULT_LANGUAGE) -> int | None:
    """A EUR amount as typed on a page in ``lang`` → cents; None if it is not one (the
    form says why in the page's words). The rules: :func:`formatting.parse_amount`."""
    try:
        return formatting.parse_amount(text, lang if lang in LANGUAGES else DEFAULT_LANGUAGE)
    except AmountError:
        return None


def parse_minutes(text: str, lang: str = DEFAULT_LANGUAGE) -> int | None:
    """Whole minutes (``"1.000"``, ``"20 Min."``) → minutes; None if not a number of them."""
    del lang  # the same in both languages: minutes have no decimals to mistake
    try:
        return formatting.parse_minutes(text)
    except AmountError:
        return None
