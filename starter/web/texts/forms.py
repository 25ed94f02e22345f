"""Words of the forms pages (German and English): field errors, the chart, sign-in."""

from __future__ import annotations

NBSP = "\u00a0"

MESSAGES: dict[str, dict[str, str]] = {
    "de": {
        "forms.eur_missing": "Bitte gib einen Betrag in Euro ein.",
        "forms.eur_invalid": (
            "Bitte gib einen Betrag in Euro von {low} bis {high} ein, zum Beispiel {example}."
        ),
        "forms.minutes_missing": "Bitte gib eine Anzahl Minuten ein.",
        "forms.minutes_invalid": (
            f"Bitte gib ganze Minuten von {{low}} bis {{high}}{NBSP}Min. ein, zum Beispiel 1.000."
        ),
        "forms.email_missing": "Bitte gib Deine E-Mail-Adresse ein.",
        "forms.password_missing": "Bitte gib Dein Passwort ein.",
        "forms.code_missing": "Bitte gib den Code aus der E-Mail ein.",
        "forms.errors_title": "Bitte prüfe die markierten Felder.",
        "forms.chart_empty": "Noch keine Anrufe in diesem Zeitraum",
        "forms.chart_unit": "Min.",
        "forms.chart_axis": "Minuten pro Tag",
    },
    "en": {
        "forms.eur_missing": "Please enter an amount in euros.",
        "forms.eur_invalid": (
            "Please enter an amount in euros from {low} to {high}, for example {example}."
        ),
        "forms.minutes_missing": "Please enter a number of minutes.",
        "forms.minutes_invalid": (
            f"Please enter whole minutes from {{low}} to {{high}}{NBSP}min, for example 1,000."
        ),
        "forms.email_missing": "Please enter your email address.",
        "forms.password_missing": "Please enter your password.",
        "forms.code_missing": "Please enter the code from the email.",
        "forms.errors_title": "Please check the marked fields.",
        "forms.chart_empty": "No calls in this period yet",
        "forms.chart_unit": "min",
        "forms.chart_axis": "Minutes per day",
    },
}
