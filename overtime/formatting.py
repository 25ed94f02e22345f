"""Locale formatting and amount parsing, German and English: the one place for both.

Money, numbers, minutes, dates, times and periods as the web app, the emails, the invoice
lines, the CLI and the finance report write them, and the one parser for amounts and
minutes people type. Built on Babel (CLDR data), with explicit patterns so that what
customers see stays what they saw before Babel (``1.234,50 €`` with an ordinary space in
emails, a no-break space on pages; ``€1,234.50``; ``01.11.2026 14:30`` / ``2026-11-01 14:30``).

Money is integer cents in, text out; amounts go through ``Decimal``, never a float.
Floats come in only as chart values and percentages (already floats where they are made),
and are rounded here from their exact value, half to even, as Python's own ``format`` does.

The web catalogue (``starter/web/texts``) keeps its words; only numbers and dates live here.
"""

from __future__ import annotations

import re
from datetime import date, datetime, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import DateTimePattern
from babel.dates import parse_pattern as parse_date_pattern
from babel.numbers import (
    NumberPattern,
    get_currency_symbol,
    get_decimal_symbol,
    get_group_symbol,
    parse_pattern,
)

LANGUAGES = ("de", "en")
DEFAULT_LANGUAGE = "de"
NBSP = "\u00a0"
# Babel locales for our two languages. English is "en": its CLDR month abbreviations are
# "Sep" (en_GB's are "Sept"), and every English pattern below is explicit anyway.
_BABEL = {"de": "de_DE", "en": "en"}
_LOCALE = {lang: Locale.parse(name) for lang, name in _BABEL.items()}
# Where the euro sign goes: after the amount in German, before it in English (as in
# Britain and Ireland, and on Stripe's en-GB invoices). A minus comes first: -€1.50.
# The sign is CLDR's, written into the pattern once: Babel's per-call currency lookup
# made an amount 30 to 60 times slower to write than the f-strings it replaced.
_EURO = {lang: get_currency_symbol("EUR", locale=locale) for lang, locale in _LOCALE.items()}
_MONEY_PATTERN = {"de": f"#,##0.00 {_EURO['de']}", "en": f"{_EURO['en']}#,##0.00"}
_DATE_TIME_PATTERN = {"de": "dd.MM.yyyy HH:mm", "en": "yyyy-MM-dd HH:mm"}
_DAY_PATTERN = {"de": "dd.MM.", "en": "d MMM"}
_DATE_PATTERN = {"de": "dd.MM.yyyy", "en": "d MMM yyyy"}
_MINUTES_UNIT = {"de": "Min.", "en": "min"}
_SECONDS_UNIT = {"de": "Sek.", "en": "s"}


def language(locale: str | None) -> str:
    """``"de"`` or ``"en"`` from a stored or requested locale (``"de-DE"``, ``"en_GB"``);
    anything else, and None, is German, the product's first language."""
    short = (locale or "").replace("_", "-").split("-")[0].lower()
    return short if short in LANGUAGES else DEFAULT_LANGUAGE


def _euros(cents: int) -> Decimal:
    # A float (or a bool) here would be a bug upstream: money is integer cents.
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError(f"money is integer cents, not {type(cents).__name__}")
    return Decimal(cents).scaleb(-2)


def _zone(timezone: str | tzinfo) -> tzinfo:
    return ZoneInfo(timezone) if isinstance(timezone, str) else timezone


def _rounded(value: float | int | Decimal, decimals: int) -> Decimal:
    # Decimal(float) is the float's exact value, so half-even here rounds as f"{x:.1f}".
    return Decimal(value).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN)


@cache
def _number_pattern(pattern: str) -> NumberPattern:
    return parse_pattern(pattern)


@cache
def _date_pattern(pattern: str) -> DateTimePattern:
    return parse_date_pattern(pattern)


def _number(value: Decimal, pattern: str, lang: str) -> str:
    text: str = _number_pattern(pattern).apply(value, _LOCALE[lang])
    return text


def _date(value: date, pattern: str, lang: str) -> str:
    text: str = _date_pattern(pattern).apply(value, _LOCALE[lang])
    return text


def _grouped(value: Decimal, decimals: int, lang: str) -> str:
    return _number(value, "#,##0" + ("." + "0" * decimals if decimals else ""), lang)


# --- money -------------------------------------------------------------------------------


def money(cents: int, locale: str | None, *, no_break: bool = False) -> str:
    """``123450`` → ``1.234,50 €`` (de) / ``€1,234.50`` (en); ``-150`` → ``-1,50 €`` /
    ``-€1.50``. ``no_break`` joins number and sign with a no-break space (web pages: an
    amount never wraps); emails and invoices keep the ordinary space."""
    lang = language(locale)
    pattern = _MONEY_PATTERN[lang]
    if no_break:
        pattern = pattern.replace(" ", NBSP)
    return _number(_euros(cents), pattern, lang)


def money_code(cents: int | None) -> str:
    """``123450`` → ``1234.50 EUR``, ``None`` → ``-``: the operators' form (CLI, finance
    tables, the dev stack's banner), plain ASCII and ungrouped, so it reads back into
    ``--limit-eur`` as it is."""
    if cents is None:
        return "-"
    return f"{_number(_euros(cents), '0.00', 'en')} EUR"


def amount_input(cents: int | None, locale: str | None) -> str:
    """Cents as the number a form field is filled with: ``5000`` → ``50,00`` / ``50.00``
    (no grouping, no sign: what :func:`parse_amount` reads back in the same language)."""
    if cents is None:
        return ""
    return _number(_euros(cents), "0.00", language(locale))


# --- numbers and minutes -----------------------------------------------------------------


def number(value: float | int | Decimal, locale: str | None, decimals: int = 0) -> str:
    """``1234.5`` → ``1.234,5`` / ``1,234.5`` with ``decimals=1`` (chart ticks, tables)."""
    lang = language(locale)
    return _grouped(_rounded(value, decimals), decimals, lang)


def percent(value: float, locale: str | None) -> str:
    """A share of the limit without the sign: ``66.67`` → ``67``, ``5.25`` → ``5,2`` /
    ``5.2``; one decimal only below 10 %, where it still tells something."""
    lang = language(locale)
    decimals = 0 if value >= 10 or value == 0 else 1
    return _number(_rounded(value, decimals), "0.0" if decimals else "0", lang)


def minutes(seconds: int, locale: str | None) -> str:
    """Seconds as minutes with one decimal, rounded half to even: ``1596`` → ``26,6`` /
    ``26.6``; ``60_000_000`` → ``1.000.000,0``."""
    return _grouped(_rounded(Decimal(seconds) / 60, 1), 1, language(locale))


def minutes_floor(seconds: int, locale: str | None) -> str:
    """Minutes with one decimal, rounded down: what a EUR limit buys at least
    (``1538`` → ``25,6``: never a tenth more than the limit pays for)."""
    return _grouped(Decimal(seconds // 6).scaleb(-1), 1, language(locale))


def whole_number(value: int, locale: str | None) -> str:
    """``100000`` → ``100.000`` / ``100,000`` (minutes counts, limits)."""
    return _grouped(Decimal(value), 0, language(locale))


def minutes_unit(count: int, locale: str | None) -> str:
    """A count of whole minutes with its unit: ``20 Min.`` / ``20 min``."""
    lang = language(locale)
    return f"{whole_number(count, lang)} {_MINUTES_UNIT[lang]}"


def minutes_seconds(seconds: int, locale: str | None) -> str:
    """``1596`` → ``26 Min. 36 Sek.`` / ``26 min 36 s``; whole minutes without seconds.

    Exact where money follows from it: minutes and seconds × the price per minute is the
    cost, where a decimal minute (``26,6``) could be any of five seconds."""
    lang = language(locale)
    whole, rest = divmod(seconds, 60)
    text = minutes_unit(whole, lang)
    return f"{text} {rest} {_SECONDS_UNIT[lang]}" if rest else text


# --- the limit ---------------------------------------------------------------------------


def limit(limit_cents: int | None, limit_minutes: int | None, locale: str | None) -> str:
    """The limit alone in the customer's unit: ``20 Min.`` / ``20 min`` or ``7,80 €``;
    ``–`` without one."""
    if limit_minutes is not None:
        return minutes_unit(limit_minutes, locale)
    return money(limit_cents, locale) if limit_cents is not None else "–"


def usage_of_limit(
    *,
    extra_seconds: int,
    extra_cost_cents: int,
    limit_cents: int | None,
    limit_minutes: int | None,
    locale: str | None,
) -> str:
    """The extra usage against the limit in the unit the customer chose.

    ``7,41 € von 7,80 €`` / ``€7.41 of €7.80`` for a EUR limit; ``19 von 20 Min.
    (7,41 € von 7,80 €)`` / ``19 of 20 min (€7.41 of €7.80)`` for a minutes limit
    (``limit_minutes`` set; ``limit_cents`` is then its EUR equivalent); "" without one.
    Used minutes are whole and rounded down: "19" is never shown before 19 are used.
    """
    lang = language(locale)
    of = "von" if lang == "de" else "of"
    spent = (
        f"{money(extra_cost_cents, lang)} {of} {money(limit_cents, lang)}"
        if limit_cents is not None
        else ""
    )
    if limit_minutes is None:
        return spent
    used = whole_number(extra_seconds // 60, lang)
    counted = f"{used} {of} {minutes_unit(limit_minutes, lang)}"
    # The minutes first (the customer's unit), what they cost beside them.
    return f"{counted} ({spent})" if spent else counted


# --- dates and times ---------------------------------------------------------------------


def date_time(moment: datetime, timezone: str | tzinfo, locale: str | None) -> str:
    """``01.11.2026 14:30`` / ``2026-11-01 14:30`` in ``timezone`` (an IANA name or zone)."""
    lang = language(locale)
    # astimezone first: a naive value means the machine's local time, as it always did.
    local = moment.astimezone(_zone(timezone))
    return _date(local, _DATE_TIME_PATTERN[lang], lang)


def period(start: datetime, end: datetime, timezone: str | tzinfo, locale: str | None) -> str:
    """``01.11.2026 00:00 – 01.12.2026 00:00``: both ends as :func:`date_time` writes them."""
    return f"{date_time(start, timezone, locale)} – {date_time(end, timezone, locale)}"


def day(value: date, locale: str | None) -> str:
    """A day without its year, as chart labels show it: ``01.11.`` / ``1 Nov``."""
    lang = language(locale)
    return _date(value, _DAY_PATTERN[lang], lang)


def full_date(value: date, locale: str | None) -> str:
    """``04.12.2026`` / ``4 Dec 2026``."""
    lang = language(locale)
    return _date(value, _DATE_PATTERN[lang], lang)


def day_range(first: date, last: date, locale: str | None) -> str:
    """Days from ``first`` to ``last``, shortened where months or years agree:
    ``01.11.–30.11.2026`` / ``1–30 Nov 2026``, ``15 Nov – 14 Dec 2026``."""
    lang = language(locale)
    if first == last:
        return full_date(first, lang)
    if lang == "de":
        if first.year == last.year:
            return f"{day(first, lang)}–{full_date(last, lang)}"
        return f"{full_date(first, lang)}–{full_date(last, lang)}"
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}–{full_date(last, lang)}"
    if first.year == last.year:
        return f"{day(first, lang)} – {full_date(last, lang)}"
    return f"{full_date(first, lang)} – {full_date(last, lang)}"


# --- reading amounts ---------------------------------------------------------------------


class AmountError(ValueError):
    """Text that is not an amount; the message says why ("it is negative"), for the CLI
    and the logs (the web pages show their own words from the catalogue)."""


# One currency mark before or after the number: "12 €", "€12", "EUR 12", "12 Euro".
_CURRENCY = re.compile(r"^(?:€|euros?|eur)?\s*(.*?)\s*(?:€|euros?|eur)?$", re.IGNORECASE)
# Spaces people type or paste between thousands ("1 000", "1\u00a0000", "1\u202f000").
_SPACES = re.compile(r"[\s\u00a0\u202f]+")
_DIGITS = re.compile(r"[0-9]+")
_MAX_DIGITS = 12
_GROUPED = re.compile(r"[1-9][0-9]{0,2}(?:([ .,])[0-9]{3})(?:\1[0-9]{3})*")


def _bounded(digits: str) -> int:
    # Far above any limit, and below the length where int() itself refuses a string.
    if len(digits.lstrip("0")) > _MAX_DIGITS:
        raise AmountError("it is too large")
    return int(digits)


def _separators(locale: str | None) -> tuple[str, str] | None:
    if locale is None:
        return None
    babel_locale = _LOCALE[language(locale)]
    return get_decimal_symbol(babel_locale), get_group_symbol(babel_locale)


def _whole_part(text: str) -> str:
    """The digits before the decimals, thousands separators checked and dropped."""
    if _DIGITS.fullmatch(text):
        return text
    if _GROUPED.fullmatch(text):
        return re.sub(r"[ .,]", "", text)
    raise AmountError("its thousands are not in groups of three")


def parse_amount(text: str, locale: str | None = None) -> int:
    """A EUR amount as a person types it → cents, exactly; :class:`AmountError` if not one.

    Both languages are read on every page: ``1.234,50`` and ``1,234.50`` are the same
    amount, and so are ``12,5`` and ``12.5``. The decimals are what follows the last
    separator when it is one or two digits. A lone separator before three digits is
    the one undecidable case: ``locale`` says whether it groups thousands (``1.000`` on a
    German page, ``1,000`` on an English one) or is refused as three decimals
    (``1,000`` on a German page); with no locale (the CLI) it is refused as ambiguous.
    Never accepted: a sign, an exponent, other digits than 0-9, more than two decimals.
    """
    cleaned = _SPACES.sub(" ", text).strip()
    matched = _CURRENCY.fullmatch(cleaned)
    number_text = matched.group(1) if matched else cleaned
    if not number_text:
        raise AmountError("it has no number")
    if number_text.startswith(("-", "\u2212")):
        raise AmountError("it is negative")
    if not re.fullmatch(r"[0-9][0-9 .,]*", number_text):
        raise AmountError("it is not a number (digits 0-9, with . or , only)")
    last = max(number_text.rfind("."), number_text.rfind(","))
    if last == -1:
        return _bounded(_whole_part(number_text)) * 100
    separator, head, tail = number_text[last], number_text[:last], number_text[last + 1 :]
    if not _DIGITS.fullmatch(tail):
        raise AmountError("it does not end in a digit")
    other = "," if separator == "." else "."
    if len(tail) <= 2 and separator not in head:
        whole, decimals = _whole_part(head), tail
    elif len(tail) == 3 and other not in head:
        # A separator before three digits groups thousands, unless it is the only one
        # and could be the decimal separator.
        separators = _separators(locale)
        if separator in head or (separators is not None and separator == separators[1]):
            whole, decimals = _whole_part(number_text), ""
        elif separators is None:
            raise AmountError(
                "it is ambiguous (thousands or three decimals?): write it without "
                f"the {separator!r}, or with two decimals"
            )
        else:
            raise AmountError("it has more than two decimals")
    elif separator in head:  # "1.000.00": it groups, but not in threes
        raise AmountError("its thousands are not in groups of three")
    else:
        raise AmountError("it has more than two decimals")
    return _bounded(whole) * 100 + int(decimals.ljust(2, "0"))


def parse_minutes(text: str) -> int:
    """Whole minutes: ``"1000"``, ``"1.000"``, ``"1,000"``, ``"1 000"``, ``"20 Min."``.

    The same in both languages: minutes have no decimals, so a dot, comma or space can
    only group thousands, and ``"1,5"`` is refused rather than guessed."""
    cleaned = _SPACES.sub(" ", text).strip()
    cleaned = re.sub(r"\s*(min\.?|minuten|minutes)$", "", cleaned, flags=re.IGNORECASE)
    if not cleaned:
        raise AmountError("it has no number")
    if not re.fullmatch(r"[0-9][0-9 .,]*", cleaned):
        raise AmountError("it is not a whole number")
    return _bounded(_whole_part(cleaned))
