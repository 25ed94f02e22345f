"""overtime.formatting: the one place money, minutes and dates are written and amounts read.

Examples pin what customers and operators see (the texts the emails, pages, invoices and
the CLI showed before Babel); properties check that what is written reads back exactly.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overtime import formatting
from overtime.formatting import AmountError, parse_amount, parse_minutes

# Pure formatting: no database; the PostgreSQL pass would repeat it unchanged.
pytestmark = pytest.mark.sqlite_only

NBSP = "\u00a0"
LANGS = ("de", "en")
# Up to a hundred million euros: far above any limit, and past every grouping step.
cents = st.integers(min_value=0, max_value=10_000_000_000)
# No deadline: a shared CI machine's pauses are no finding (speed is for bench/).
untimed = settings(deadline=None)


# --- money -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cents_", "de", "en"),
    [
        (0, "0,00 €", "€0.00"),
        (1, "0,01 €", "€0.01"),
        (39, "0,39 €", "€0.39"),
        (2000, "20,00 €", "€20.00"),
        (123456, "1.234,56 €", "€1,234.56"),
        (123_456_789_00, "123.456.789,00 €", "€123,456,789.00"),
        (-5, "-0,05 €", "-€0.05"),
        (-150, "-1,50 €", "-€1.50"),
        (-123456, "-1.234,56 €", "-€1,234.56"),
    ],
)
def test_money_in_both_languages(cents_: int, de: str, en: str) -> None:
    assert formatting.money(cents_, "de") == de
    assert formatting.money(cents_, "en") == en
    # Pages join number and sign with a no-break space, so an amount never wraps.
    assert formatting.money(cents_, "de", no_break=True) == de.replace(" ", NBSP)


def test_negative_amounts_keep_their_sign_in_front() -> None:
    # The finance report once floored negatives ("-1" euro and "50" cents for -0,50 €);
    # English once wrote the sign after the euro sign ("€-1.50").
    assert formatting.money(-50, "de") == "-0,50 €"
    assert formatting.money(-150, "de") == "-1,50 €"
    assert formatting.money(-1, "en") == "-€0.01"
    assert formatting.money_code(-5) == "-0.05 EUR"
    for lang in LANGS:
        assert parse_amount(formatting.money(-150, lang).lstrip("-"), lang) == 150


def test_the_finance_report_groups_thousands_like_every_other_german_amount() -> None:
    assert formatting.money(0, "de") == "0,00 €"
    assert formatting.money(123456789, "de") == "1.234.567,89 €"


def test_locales_other_than_german_and_english_are_german() -> None:
    assert formatting.language("de-DE") == "de" and formatting.language("de_AT") == "de"
    assert formatting.language("en_GB") == "en" and formatting.language("EN-ie") == "en"
    assert formatting.language("fr") == "de" and formatting.language(None) == "de"
    assert formatting.money(100, "fr-FR") == "1,00 €"


def test_operators_money_is_ascii_ungrouped_and_reads_back_on_the_command_line() -> None:
    assert formatting.money_code(123456) == "1234.56 EUR"
    assert formatting.money_code(0) == "0.00 EUR"
    assert formatting.money_code(None) == "-"
    assert parse_amount(formatting.money_code(123456)) == 123456


def test_money_is_integer_cents_never_a_float() -> None:
    with pytest.raises(TypeError):
        formatting.money(12.5, "de")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        formatting.money(True, "de")


def test_form_fields_are_filled_ungrouped_in_the_pages_language() -> None:
    assert formatting.amount_input(2550, "de") == "25,50"
    assert formatting.amount_input(123456, "de") == "1234,56"
    assert formatting.amount_input(123456, "en") == "1234.56"
    assert formatting.amount_input(None, "de") == ""


# --- numbers and minutes -----------------------------------------------------------------


def test_minutes() -> None:
    assert formatting.minutes(1140, "de") == "19,0" and formatting.minutes(1140, "en") == "19.0"
    assert formatting.minutes(0, "de") == "0,0"
    assert formatting.minutes(60_000_000, "de") == "1.000.000,0"
    assert formatting.minutes(60_000_000, "en") == "1,000,000.0"
    # Half to even on the exact value: 3 s is 0.05 min, 9 s is 0.15 min.
    assert formatting.minutes(3, "en") == "0.0" and formatting.minutes(9, "en") == "0.2"
    # Rounded down: what a EUR limit buys at least.
    assert formatting.minutes_floor(1538, "de") == "25,6"
    assert formatting.minutes_floor(6_000_000, "de") == "100.000,0"


def test_minutes_and_seconds_as_an_invoice_line_shows_them() -> None:
    assert formatting.minutes_seconds(1596, "de") == "26 Min. 36 Sek."
    assert formatting.minutes_seconds(1596, "en") == "26 min 36 s"
    assert formatting.minutes_seconds(1200, "en") == "20 min"
    assert formatting.minutes_seconds(0, "de") == "0 Min."
    assert formatting.minutes_seconds(60_036, "de") == "1.000 Min. 36 Sek."


def test_numbers_and_percentages() -> None:
    assert formatting.number(1234.5, "de", 1) == "1.234,5"
    assert formatting.number(1234.5, "en", 1) == "1,234.5"
    assert formatting.number(0.25, "en", 1) == f"{0.25:.1f}"  # rounds as Python does
    assert formatting.whole_number(100_000, "de") == "100.000"
    assert formatting.percent(66.67, "de") == "67" and formatting.percent(5.25, "de") == "5,2"
    assert formatting.percent(0, "en") == "0" and formatting.percent(9.96, "en") == "10.0"


@untimed
@given(st.floats(min_value=0, max_value=1e9, allow_nan=False), st.integers(0, 2))
def test_numbers_round_as_python_formats_them(value: float, decimals: int) -> None:
    assert formatting.number(value, "en", decimals) == f"{value:,.{decimals}f}"


# --- the limit ---------------------------------------------------------------------------


def test_limit_texts() -> None:
    assert formatting.limit(780, None, "de") == "7,80 €"
    assert formatting.limit(780, 20, "de") == "20 Min."
    assert formatting.limit(780, 20, "en") == "20 min"
    assert formatting.limit(None, None, "en") == "–"
    usage = {"extra_seconds": 1199, "extra_cost_cents": 741, "limit_cents": 780}
    assert formatting.usage_of_limit(**usage, limit_minutes=None, locale="de") == (
        "7,41 € von 7,80 €"
    )
    assert formatting.usage_of_limit(**usage, limit_minutes=20, locale="en") == (
        "19 of 20 min (€7.41 of €7.80)"
    )
    assert formatting.usage_of_limit(**usage, limit_minutes=20, locale="de") == (
        "19 von 20 Min. (7,41 € von 7,80 €)"
    )


# --- dates and times ---------------------------------------------------------------------


def test_dates_and_times_in_the_accounts_time_zone() -> None:
    moment = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)  # already 2027 in Berlin
    assert formatting.date_time(moment, "Europe/Berlin", "de") == "01.01.2027 00:30"
    assert formatting.date_time(moment, ZoneInfo("Europe/Berlin"), "en") == "2027-01-01 00:30"
    assert formatting.date_time(moment, "America/New_York", "de") == "31.12.2026 18:30"
    end = datetime(2027, 1, 31, 23, 0, tzinfo=UTC)
    assert formatting.period(moment, end, "Europe/Berlin", "de") == (
        "01.01.2027 00:30 – 01.02.2027 00:00"
    )
    assert formatting.day(date(2026, 9, 4), "de") == "04.09."
    assert formatting.day(date(2026, 9, 4), "en") == "4 Sep"  # CLDR's en_GB would say "Sept"
    assert formatting.full_date(date(2026, 12, 4), "en") == "4 Dec 2026"


@pytest.mark.parametrize(
    ("first", "last", "de", "en"),
    [
        (date(2026, 11, 1), date(2026, 11, 30), "01.11.–30.11.2026", "1–30 Nov 2026"),
        (date(2026, 11, 15), date(2026, 12, 14), "15.11.–14.12.2026", "15 Nov – 14 Dec 2026"),
        (date(2026, 12, 15), date(2027, 1, 14), "15.12.2026–14.01.2027",
         "15 Dec 2026 – 14 Jan 2027"),
        (date(2026, 11, 1), date(2026, 11, 1), "01.11.2026", "1 Nov 2026"),
    ],
)  # fmt: skip
def test_day_ranges_shorten_what_agrees(first: date, last: date, de: str, en: str) -> None:
    assert formatting.day_range(first, last, "de") == de
    assert formatting.day_range(first, last, "en") == en


# --- reading amounts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "locale", "cents_"),
    [
        ("1.234,50", "de", 123450),
        ("1,234.50", "de", 123450),
        ("1,234.50", "en", 123450),
        ("1.234,50", "en", 123450),
        ("1.234,50", None, 123450),
        ("12,5", "en", 1250),
        ("12.5", "de", 1250),
        ("1.000", "de", 100_000),
        ("1,000", "en", 100_000),
        ("1.000.000", None, 100_000_000),
        ("1 000,50", "de", 100_050),
        ("1\u202f000", "de", 100_000),
        ("0", "de", 0),
        ("0,01", None, 1),
        ("12 €", "de", 1200),
        ("€12", "en", 1200),
        ("EUR 12", None, 1200),
        ("12 Euro", "de", 1200),
        ("999999999.99", None, 99_999_999_999),
    ],
)
def test_amounts_both_languages_write(text: str, locale: str | None, cents_: int) -> None:
    assert parse_amount(text, locale) == cents_


@pytest.mark.parametrize(
    ("text", "locale", "reason"),
    [
        ("1,000", None, "ambiguous"),
        ("1.000", None, "ambiguous"),
        ("1,000", "de", "more than two decimals"),
        ("1.000", "en", "more than two decimals"),
        ("12.345", None, "ambiguous"),
        ("1.234,567", "de", "more than two decimals"),
        ("1.2345", "de", "more than two decimals"),
        ("1.000.00", "de", "groups of three"),
        ("12.34.56", "de", "groups of three"),
        ("0.587", "de", "groups of three"),
        ("8 2", "de", "groups of three"),
        ("-5", "de", "negative"),
        ("€-5", "en", "negative"),
        ("1e3", "de", "not a number"),
        ("abc", "en", "not a number"),
        ("\u0663", "de", "not a number"),
        ("", "de", "no number"),
        ("€", "de", "no number"),
        ("5,", "de", "end in a digit"),
        ("9" * 13, "de", "too large"),
        ("9" * 5000, "de", "too large"),
    ],
)
def test_what_is_not_an_amount_says_why(text: str, locale: str | None, reason: str) -> None:
    with pytest.raises(AmountError, match=reason):
        parse_amount(text, locale)


def test_minutes_are_whole_so_separators_only_group_thousands() -> None:
    for text in ("1000", "1.000", "1,000", "1 000", "1.000 Min.", "1000 minutes"):
        assert parse_minutes(text) == 1000, text
    for text in ("1,5", "1.00", "-3", "", "Min.", "²"):
        with pytest.raises(AmountError):
            parse_minutes(text)


@untimed
@given(cents, st.sampled_from(LANGS), st.booleans())
def test_every_amount_written_reads_back_in_its_language(
    amount: int, lang: str, no_break: bool
) -> None:
    assert parse_amount(formatting.money(amount, lang, no_break=no_break), lang) == amount
    assert parse_amount(formatting.amount_input(amount, lang), lang) == amount


@untimed
@given(cents, st.sampled_from(LANGS))
def test_grouped_amounts_read_back_on_either_languages_page(amount: int, written: str) -> None:
    # A thousands separator with its decimals after it is never ambiguous, whichever
    # language the page is in and however the person writes it.
    text = formatting.number(Decimal(amount).scaleb(-2), written, 2)
    for page in (*LANGS, None):
        assert parse_amount(text, page) == amount


@untimed
@given(cents)
def test_operators_amounts_read_back_without_a_locale(amount: int) -> None:
    assert parse_amount(formatting.money_code(amount)) == amount


@untimed
@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(LANGS))
def test_whole_minutes_written_read_back(count: int, lang: str) -> None:
    assert parse_minutes(formatting.minutes_unit(count, lang)) == count


@untimed
@given(st.text(alphabet="0123456789.,-€ e\u00a0", max_size=14), st.sampled_from((*LANGS, None)))
def test_any_text_is_cents_or_a_reason(text: str, locale: str | None) -> None:
    try:
        value = parse_amount(text, locale)
    except AmountError as problem:
        assert str(problem).startswith(("it ", "its "))
    else:
        assert isinstance(value, int) and value >= 0
