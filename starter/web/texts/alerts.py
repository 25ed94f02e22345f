"""Words of the alerts page, the notices' content and the overview's forecast (German and
English)."""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "de": {
        "alerts.title": "Benachrichtigungen einstellen",
        "alerts.lead": (
            "Lege fest, ab wie viel Prozent Deines Limits für zusätzliche Minuten wir Dich "
            "warnen und wer die E-Mails von {product} außer Dir bekommt."
        ),
        "alerts.link": "Warnschwellen und Empfänger",
        "alerts.form_error": "Bitte prüfe die markierten Felder. Es wurde nichts gespeichert.",
        "alerts.unavailable": (
            "Die aktuellen Einstellungen sind gerade nicht abrufbar. Bitte versuche es gleich "
            "noch einmal."
        ),
        "alerts.thresholds_title": "Warnschwellen",
        "alerts.thresholds_label": "Warnen bei (Prozent des Limits)",
        "alerts.thresholds_hint": (
            "Bis zu {count} Werte von 1 bis 99, mit Komma getrennt, z. B. 50, 75, 90. "
            "Voreinstellung: {default} %. Leer lassen: nur bei 100 %."
        ),
        "alerts.stop_always": (
            "Bei 100 % (Limit erreicht) benachrichtigen wir Dich immer: Dann nimmt {product} "
            "keine Anrufe mehr an."
        ),
        "alerts.current": "Aktuell: {percents} und 100 %",
        "alerts.current_none": "Aktuell: nur bei 100 %",
        "alerts.extra_off": (
            "Die Warnschwellen gelten, sobald die minutenbasierte Zahlung eingeschaltet ist."
        ),
        "alerts.recipients_title": "Empfänger",
        "alerts.own_address": "Jede Benachrichtigung geht an {email}.",
        "alerts.recipients_label": "Außerdem an (E-Mail-Adressen)",
        "alerts.recipients_hint": (
            "Bis zu {count} Adressen, eine pro Zeile oder mit Komma getrennt, z. B. Deine "
            "Buchhaltung."
        ),
        "alerts.save": "Speichern",
        "alerts.to_notices": "Gesendete Benachrichtigungen",
        "alerts.flash_saved": "Deine Benachrichtigungen sind gespeichert.",
        "alerts.error_not_number": (
            "„{value}“ ist keine ganze Zahl. Bitte gib Prozentwerte wie 50, 75, 90 ein."
        ),
        "alerts.error_range": "{value} % geht nicht: Jeder Wert muss zwischen 1 und 99 liegen.",
        "alerts.error_hundred": (
            "100 % musst Du nicht eintragen: Bei 100 % benachrichtigen wir Dich immer."
        ),
        "alerts.error_twice": "Jeder Wert darf nur einmal vorkommen.",
        "alerts.error_too_many": "Höchstens {count} Warnschwellen.",
        "alerts.error_address": "„{value}“ ist keine gültige E-Mail-Adresse.",
        "alerts.error_too_many_recipients": "Höchstens {count} zusätzliche Empfänger.",
        "alerts.error_busy": "Gerade nicht möglich. Bitte versuche es gleich noch einmal.",
        # The notices page: the content of each notice.
        "alerts.notices_settings": "Warnschwellen und Empfänger einstellen",
        "alerts.notice_show": "Inhalt anzeigen",
        "alerts.notice_recipients": "Gesendet an",
        "alerts.notice_no_body": (
            "Der Inhalt dieser älteren Benachrichtigung wurde nicht gespeichert."
        ),
        "alerts.notice_partial": "Wird noch zugestellt",
        "alerts.kind.extra_minutes_enabled": "Zusätzliche Minuten eingeschaltet",
        "alerts.kind.payment_method_changed": "Zahlungsmethode geändert",
        "alerts.kind.plan_changed": "Tarif geändert",
        # The overview's forecast.
        "forecast.title": "Prognose bis Ende des Zeitraums",
        "forecast.too_early": (
            "Noch zu früh für eine Prognose: Wir brauchen mindestens einen Tag Nutzung in "
            "diesem Zeitraum."
        ),
        "forecast.unavailable": "Die Prognose ist gerade nicht verfügbar.",
        "forecast.extra_cost": "Zusätzliche Kosten bei gleichbleibender Nutzung: {cost}",
        "forecast.extra_off": (
            "Die minutenbasierte Zahlung ist aus: Es entstehen keine zusätzlichen Kosten."
        ),
        "forecast.limit_on": "Das Limit wäre bei diesem Tempo am {day} erreicht.",
        "forecast.limit_not": "Das Limit wird bei diesem Tempo nicht erreicht.",
        "forecast.limit_reached": "Das Limit ist erreicht.",
        "forecast.basis": "Hochgerechnet aus der bisherigen Nutzung in diesem Zeitraum.",
    },
    "en": {
        "alerts.title": "Alert settings",
        "alerts.lead": (
            "Choose at what percentage of your extra-minutes limit we warn you, and who gets "
            "{product}'s emails besides you."
        ),
        "alerts.link": "Alert thresholds and recipients",
        "alerts.form_error": "Please check the marked fields. Nothing was saved.",
        "alerts.unavailable": (
            "The current settings cannot be read right now. Please try again shortly."
        ),
        "alerts.thresholds_title": "Warning thresholds",
        "alerts.thresholds_label": "Warn at (percent of the limit)",
        "alerts.thresholds_hint": (
            "Up to {count} values from 1 to 99, separated by commas, e.g. 50, 75, 90. "
            "Default: {default} %. Leave empty: only at 100 %."
        ),
        "alerts.stop_always": (
            "At 100 % (limit reached) we always notify you: {product} then stops taking calls."
        ),
        "alerts.current": "Now: {percents} and 100 %",
        "alerts.current_none": "Now: only at 100 %",
        "alerts.extra_off": "The thresholds apply once per-minute billing is switched on.",
        "alerts.recipients_title": "Recipients",
        "alerts.own_address": "Every notification goes to {email}.",
        "alerts.recipients_label": "Also to (email addresses)",
        "alerts.recipients_hint": (
            "Up to {count} addresses, one per line or separated by commas, e.g. your "
            "accounts department."
        ),
        "alerts.save": "Save",
        "alerts.to_notices": "Notifications sent",
        "alerts.flash_saved": "Your alert settings are saved.",
        "alerts.error_not_number": (
            "“{value}” is not a whole number. Enter percentages like 50, 75, 90."
        ),
        "alerts.error_range": "{value} % is not possible: each value must be between 1 and 99.",
        "alerts.error_hundred": "No need to enter 100 %: we always notify you at 100 %.",
        "alerts.error_twice": "Each value only once.",
        "alerts.error_too_many": "At most {count} thresholds.",
        "alerts.error_address": "“{value}” is not a valid email address.",
        "alerts.error_too_many_recipients": "At most {count} extra recipients.",
        "alerts.error_busy": "Not possible right now. Please try again shortly.",
        "alerts.notices_settings": "Set alert thresholds and recipients",
        "alerts.notice_show": "Show content",
        "alerts.notice_recipients": "Sent to",
        "alerts.notice_no_body": "The content of this older notification was not kept.",
        "alerts.notice_partial": "Still being delivered",
        "alerts.kind.extra_minutes_enabled": "Extra minutes switched on",
        "alerts.kind.payment_method_changed": "Payment method changed",
        "alerts.kind.plan_changed": "Plan changed",
        "forecast.title": "Forecast to the end of the period",
        "forecast.too_early": (
            "Too early for a forecast: we need at least a day of use in this period."
        ),
        "forecast.unavailable": "The forecast is not available right now.",
        "forecast.extra_cost": "Extra cost if you keep this pace: {cost}",
        "forecast.extra_off": "Per-minute billing is off: there is no extra cost.",
        "forecast.limit_on": "At this pace the limit would be reached on {day}.",
        "forecast.limit_not": "At this pace the limit will not be reached.",
        "forecast.limit_reached": "The limit is reached.",
        "forecast.basis": "Projected from your use so far in this period.",
    },
}
