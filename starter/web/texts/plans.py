"""Words of the plan page (``/app/a/{id}/plan``) and its confirmation step, German and English."""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "de": {
        "nav.plan": "Tarif",
        "plan_change.title": "Tarif wechseln",
        "plan_change.lead": (
            "Wähle den Tarif, der zu Deinem Anrufaufkommen passt. Der Wechsel gilt sofort."
        ),
        "plan_change.current": "Dein Tarif",
        "plan_change.current_pill": "Aktueller Tarif",
        "plan_change.switch": "Zu {plan} wechseln",
        "plan_change.used": (
            "In diesem Abrechnungszeitraum hast Du {used} von {included} Inklusivminuten genutzt."
        ),
        "plan_change.rules_title": "Was bei einem Wechsel im laufenden Monat passiert",
        "plan_change.rule_now": "Der neue Tarif gilt sofort, nicht erst ab dem nächsten Monat.",
        "plan_change.rule_included": (
            "Die Inklusivminuten des neuen Tarifs gelten für den ganzen laufenden "
            "Abrechnungszeitraum. Schon genutzte Inklusivminuten bleiben genutzt: Bei einem "
            "größeren Tarif stehen Dir die restlichen Minuten sofort zur Verfügung, bei einem "
            "kleineren können keine mehr übrig sein."
        ),
        "plan_change.rule_extra": (
            "Zusätzliche Minuten, die Du in diesem Zeitraum schon genutzt hast, werden zum "
            "bisherigen Preis abgerechnet; jede weitere zum Preis des neuen Tarifs."
        ),
        "plan_change.rule_limit": (
            "Dein Limit bleibt: ein Limit in Euro behält seinen Betrag, ein Limit in Minuten "
            "seine Minuten."
        ),
        "plan_change.rule_free": (
            "Beim Wechsel in einen Tarif ohne Grundgebühr werden zusätzliche Minuten "
            "ausgeschaltet; schon genutzte werden am Ende des Zeitraums abgerechnet."
        ),
        "plan_change.confirm_title": "Wechsel zu {plan} bestätigen",
        "plan_change.confirm_lead": "Bitte prüfe, was der Wechsel von {old} zu {new} bedeutet:",
        "plan_change.confirm_included": (
            "Im Tarif {plan} hast Du {included} Inklusivminuten pro Monat. Du hast in diesem "
            "Zeitraum schon {used} Min. genutzt, es bleiben Dir {left} Min. bis zum Ende des "
            "Zeitraums."
        ),
        "plan_change.confirm_extra_off": (
            "Zusätzliche Minuten werden sofort ausgeschaltet: Sind die Inklusivminuten "
            "aufgebraucht, nimmt {product} keine Anrufe mehr an."
        ),
        "plan_change.confirm_extra_unavailable": (
            "Im Tarif {plan} gibt es keine zusätzlichen Minuten. Sind die Inklusivminuten "
            "aufgebraucht, nimmt {product} keine Anrufe mehr an."
        ),
        "plan_change.confirm_extra_billed": (
            "Die bisher genutzten zusätzlichen Minuten ({cost}) werden am Ende des "
            "Zeitraums zum bisherigen Preis abgerechnet."
        ),
        "plan_change.confirm_price": (
            "Jede weitere zusätzliche Minute kostet {price} statt bisher {old_price}."
        ),
        "plan_change.confirm_submit": "Ja, zu {plan} wechseln",
        "plan_change.cancel": "Abbrechen",
        "plan_change.flash_changed": "Tarif gewechselt. Der neue Tarif gilt ab sofort.",
        "plan_change.flash_unchanged": "Das ist schon Dein Tarif.",
        "plan_change.error_unknown": "Diesen Tarif gibt es nicht (mehr).",
        "plan_change.error_busy": (
            "Der Tarif konnte gerade nicht gewechselt werden. Bitte versuche es gleich noch einmal."
        ),
        "plan_change.tile_text": (
            "Dein Tarif: {plan}. Wechsle jederzeit, der neue Tarif gilt sofort."
        ),
        "plan_change.prices_link": "Zur Preisübersicht",
    },
    "en": {
        "nav.plan": "Plan",
        "plan_change.title": "Change plan",
        "plan_change.lead": (
            "Choose the plan that fits your call volume. The change applies immediately."
        ),
        "plan_change.current": "Your plan",
        "plan_change.current_pill": "Current plan",
        "plan_change.switch": "Switch to {plan}",
        "plan_change.used": (
            "You have used {used} of {included} included minutes in this billing period."
        ),
        "plan_change.rules_title": "What happens when you change mid-month",
        "plan_change.rule_now": "The new plan applies immediately, not from next month.",
        "plan_change.rule_included": (
            "The new plan's included minutes count for the whole current billing period. "
            "Included minutes you used stay used: on a larger plan the rest is available "
            "right away, on a smaller one none may be left."
        ),
        "plan_change.rule_extra": (
            "Extra minutes you already used this period are billed at the old price; every "
            "further one at the new plan's price."
        ),
        "plan_change.rule_limit": (
            "Your limit stays: a limit in euros keeps its amount, a limit in minutes its minutes."
        ),
        "plan_change.rule_free": (
            "Moving to a plan without a monthly fee switches extra minutes off; those already "
            "used are billed at the end of the period."
        ),
        "plan_change.confirm_title": "Confirm the switch to {plan}",
        "plan_change.confirm_lead": "Please check what moving from {old} to {new} means:",
        "plan_change.confirm_included": (
            "{plan} includes {included} minutes per month. You have used {used} min this "
            "period, {left} min are left until the period ends."
        ),
        "plan_change.confirm_extra_off": (
            "Extra minutes are switched off at once: when the included minutes are used up, "
            "{product} stops taking calls."
        ),
        "plan_change.confirm_extra_unavailable": (
            "{plan} has no extra minutes. When the included minutes are used up, {product} "
            "stops taking calls."
        ),
        "plan_change.confirm_extra_billed": (
            "The extra minutes used so far ({cost}) are billed at the old price at the end "
            "of the period."
        ),
        "plan_change.confirm_price": (
            "Every further extra minute costs {price} instead of {old_price}."
        ),
        "plan_change.confirm_submit": "Yes, switch to {plan}",
        "plan_change.cancel": "Cancel",
        "plan_change.flash_changed": "Plan changed. The new plan applies immediately.",
        "plan_change.flash_unchanged": "That is your plan already.",
        "plan_change.error_unknown": "This plan does not exist (any more).",
        "plan_change.error_busy": (
            "The plan could not be changed just now. Please try again shortly."
        ),
        "plan_change.tile_text": (
            "Your plan: {plan}. Change at any time; the new plan applies at once."
        ),
        "plan_change.prices_link": "Price overview",
    },
}
