"""The words every customer page shares (login, navigation, overview, extra minutes).

Feature pages keep their words in a module of their own beside this one; the package
merges them and refuses a key defined twice.
"""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "de": {
        "lang.name": "Deutsch",
        "skip": "Zum Inhalt springen",
        "login.title": "Anmelden",
        "login.intro": "Melde Dich mit Deinen Account-Daten an.",
        "login.email": "E-Mail",
        "login.password": "Passwort",
        "login.submit": "Anmelden",
        "login.failed": "E-Mail oder Passwort ist falsch.",
        "login.throttled": (
            "Zu viele Fehlversuche. Bitte versuche es in {minutes} Minuten noch einmal."
        ),
        "login.expired": "Deine Sitzung ist abgelaufen. Bitte versuche es noch einmal.",
        "login.code_title": "Code eingeben",
        "login.code_intro": (
            "Für dieses Konto gab es viele fehlgeschlagene Anmeldeversuche. War das "
            "Passwort richtig, haben wir Dir einen sechsstelligen Code per E-Mail "
            "geschickt; gib ihn hier ein."
        ),
        "login.code": "Code aus der E-Mail",
        "login.code_submit": "Bestätigen",
        "login.code_wrong": "Der Code stimmt nicht oder ist abgelaufen.",
        "login.code_expired": "Der Code ist abgelaufen. Bitte melde Dich noch einmal an.",
        "login.restart": "Noch einmal anmelden",
        "logout": "Abmelden",
        "signed_in_as": "Angemeldet als {email}",
        "nav.label": "Hauptmenü",
        "nav.overview": "Übersicht",
        "nav.extra_minutes": "Zusätzliche Minuten",
        "nav.invoices": "Rechnungen",
        "nav.notices": "Benachrichtigungen",
        "overview.title": "Übersicht",
        "assistant.intro": "Einstellungen für {product}, Deinen Telefonassistenten.",
        "assistant.open": "Öffnen",
        "assistant.extra_card": (
            "Nimm weiter Anrufe an, wenn Deine Inklusivminuten aufgebraucht sind – "
            "mit festem Limit."
        ),
        "status.off": "Aus",
        "status.on_limit": "An · Limit {limit}",
        "extra.title": "Zusätzliche Minuten",
        "extra.lead": (
            "Wenn Deine Inklusivminuten aufgebraucht sind, nimmt {product} mit der "
            "minutenbasierten Zahlung weiter Anrufe an – bis zu dem Limit, das Du festlegst. "
            "Abgerechnet wird einmal im Monat über Stripe."
        ),
        "extra.price": "Preis pro zusätzlicher Minute in Deinem Tarif {plan}: {price}",
        "extra.not_eligible.title": "In Deinem Tarif nicht verfügbar",
        "extra.not_eligible.body": (
            "Dein Tarif {plan} hat keine monatliche Grundgebühr. Zusätzliche Minuten gibt es "
            "für alle Tarife mit monatlicher Grundgebühr:"
        ),
        "extra.upgrade": "Tarif wechseln",
        "plans.plan": "Tarif",
        "plans.fee": "Grundgebühr pro Monat",
        "plans.included": "Inklusivminuten",
        "plans.extra_price": "Preis pro zusätzlicher Minute",
        "step1": "Schritt 1",
        "step2": "Schritt 2",
        "step3": "Schritt 3",
        "extra.switch": "Minutenbasierte Zahlung aktivieren",
        "extra.switch_hint": (
            "Ausgeschaltet nimmt {product} keine Anrufe mehr an, sobald die Inklusivminuten "
            "aufgebraucht sind."
        ),
        "limit.legend": "Limit festlegen",
        "limit.hint": (
            "Wie viel möchtest Du pro Abrechnungszeitraum höchstens zusätzlich ausgeben? "
            "Bei {warn_at} bekommst Du eine E-Mail, bei 100 % stoppt {product} automatisch."
        ),
        "limit.hint_stop_only": (
            "Wie viel möchtest Du pro Abrechnungszeitraum höchstens zusätzlich ausgeben? "
            "Bei 100 % bekommst Du eine E-Mail und {product} stoppt automatisch."
        ),
        "limit.unit": "Einheit",
        "limit.in_eur": "in Euro",
        "limit.in_minutes": "in Minuten",
        "limit.value_eur": "Limit in Euro",
        "limit.value_minutes": "Limit in Minuten",
        "limit.equals_minutes": "entspricht {minutes} zusätzlichen Minuten",
        "limit.equals_eur": "entspricht höchstens {amount}",
        "payment.title": "Zahlungsdaten hinterlegen",
        "payment.hint": (
            "Die Abrechnung läuft über Stripe. Deine Karten- oder Kontodaten gehen direkt an "
            "Stripe, nicht an uns."
        ),
        "payment.on_file": "Hinterlegt",
        "payment.card": "{brand} •••• {last4}",
        "payment.sepa": "SEPA-Lastschrift · IBAN •••• {last4}",
        "payment.change": "Andere Zahlungsmethode hinterlegen",
        "payment.remove": "Zahlungsmethode entfernen",
        "payment.remove_hint": "Entfernen schaltet die zusätzlichen Minuten aus.",
        "payment.method": "Zahlungsart",
        "payment.method_card": "Kreditkarte",
        "payment.method_sepa": "SEPA-Lastschrift",
        "payment.card_label": "Kartendaten",
        "payment.name": "Name der Kontoinhaberin / des Kontoinhabers",
        "payment.email": "E-Mail",
        "payment.iban": "IBAN",
        "payment.mandate": (
            "Durch Angabe Deiner IBAN und Bestätigung ermächtigst Du {business} und Stripe, "
            "unseren Zahlungsdienstleister, Deiner Bank Anweisungen zur Belastung Deines "
            "Kontos zu erteilen, und Deine Bank, Dein Konto gemäß diesen Anweisungen zu "
            "belasten. Du hast Anspruch auf Erstattung von Deiner Bank gemäß den Bedingungen "
            "Deiner Vereinbarung mit Deiner Bank. Eine Erstattung muss innerhalb von 8 Wochen "
            "ab dem Tag, an dem Dein Konto belastet wurde, verlangt werden."
        ),
        "payment.name_missing": "Bitte gib den Namen der Kontoinhaberin / des Kontoinhabers an.",
        "payment.stripe_unavailable": (
            "Stripe konnte nicht geladen werden. Bitte lade die Seite neu."
        ),
        "payment.save": "Zahlungsdaten speichern",
        "payment.working": "Wird mit Stripe bestätigt …",
        "payment.noscript": (
            "Zum Hinterlegen der Zahlungsdaten wird JavaScript benötigt (Stripe). Alle "
            "anderen Einstellungen funktionieren auch ohne."
        ),
        "payment.fake_notice": (
            "Testumgebung: Stripe läuft lokal (localstripe). Test-IBAN DE89370400440532013000, "
            "Testkarte 4242 4242 4242 4242, abgelehnte Karte 4000 0000 0000 0002."
        ),
        "save": "Speichern",
        "save_and_enable": "Zahlungsdaten speichern und aktivieren",
        "flash.saved": "Gespeichert. Die Änderung gilt ab sofort.",
        "flash.pm_saved": "Zahlungsmethode gespeichert.",
        "flash.pm_removed": "Zahlungsmethode entfernt. Zusätzliche Minuten sind jetzt aus.",
        "error.payment_method_required": (
            "Bitte hinterlege zuerst Deine Zahlungsdaten (Schritt 3), dann wird die "
            "minutenbasierte Zahlung aktiviert."
        ),
        "error.not_eligible": "Dein Tarif hat keine monatliche Grundgebühr.",
        "error.invalid_limit": (
            "Bitte gib ein gültiges Limit ein: 0,01 bis {max_eur} oder 1 bis {max_minutes} Minuten."
        ),
        "error.limit_missing": "Bitte lege ein Limit fest (Schritt 2).",
        "error.busy": "Gerade ist viel los. Bitte versuche es gleich noch einmal.",
        "error.stripe": "Stripe hat die Zahlungsdaten nicht angenommen: {detail}",
        "error.no_payment_method": "Es ist keine Zahlungsmethode hinterlegt.",
        "error.live_unavailable": "Die Live-Daten sind gerade nicht erreichbar.",
        "history.title": "Verlauf der Änderungen",
        "history.when": "Wann",
        "history.who": "Wer",
        "history.before": "Vorher",
        "history.after": "Nachher",
        "history.empty": "Noch keine Änderungen.",
        "history.you": "Du",
        "history.support": "Support",
        "usage.period": "Aktueller Abrechnungszeitraum: {period}",
        "usage.live": "Aktualisiert sich automatisch.",
        "usage.accepting": "{product} nimmt Anrufe an.",
        "usage.stop.limit_reached": (
            "Limit erreicht: {product} nimmt keine Anrufe mehr an. Erhöhe das Limit, damit es "
            "sofort weitergeht."
        ),
        "usage.stop.included_minutes_exhausted": (
            "Inklusivminuten aufgebraucht: {product} nimmt keine Anrufe mehr an. Schalte "
            "zusätzliche Minuten ein, damit es weitergeht."
        ),
        "usage.stop.payment_overdue": (
            "Zahlung überfällig: Zusätzliche Minuten sind ausgesetzt, bis die offene Rechnung "
            "bezahlt ist."
        ),
        "usage.included": "Inklusivminuten",
        "usage.of_minutes": "{used} von {total} Min.",
        "usage.extra": "Zusätzliche Minuten",
        "usage.extra_off": "Die minutenbasierte Zahlung ist aus.",
        "usage.turn_on": "Einschalten",
        "usage.change_limit": "Limit ändern",
        "usage.percent_used": "{percent} % des Limits genutzt",
        "usage.warning_mark": "90 %",
        "usage.warning": "Du hast 90 % Deines Limits erreicht.",
        "usage.cost": "Kosten bisher",
        "usage.cost_of": "{cost} von {limit}",
        "chart.title": "Nutzung pro Tag",
        "chart.included": "Inklusiv",
        "chart.extra": "Zusätzlich",
        "chart.day": "Tag",
        "chart.minutes": "Minuten",
        "chart.table": "Als Tabelle",
        "invoices.title": "Rechnungen",
        "invoices.period": "Zeitraum",
        "invoices.minutes": "Minuten",
        "invoices.amount": "Betrag",
        "invoices.status": "Status",
        "invoices.link": "Rechnung",
        "invoices.open_link": "Bei Stripe ansehen",
        "invoices.empty": (
            "Noch keine Rechnungen. Eine Rechnung entsteht am Ende jedes Zeitraums, in dem Du "
            "zusätzliche Minuten genutzt hast."
        ),
        "invoice.paid": "Bezahlt",
        "invoice.open": "Offen",
        "invoice.processing": "Lastschrift wird eingezogen",
        "invoice.payment_failed": "Zahlung fehlgeschlagen",
        "invoice.void": "Storniert",
        "invoice.draft": "Entwurf",
        "notices.title": "Benachrichtigungen",
        "notices.when": "Gesendet",
        "notices.kind": "Art",
        "notices.to": "An",
        "notices.empty": "Noch keine Benachrichtigungen.",
        "notices.failed": "Nicht zugestellt",
        "notice.limit_warning": "Limit-Warnung",
        "notice.extra_minutes_enabled": "Zusätzliche Minuten eingeschaltet",
        "notice.payment_method_changed": "Zahlungsmethode geändert",
        "notice.plan_changed": "Tarif gewechselt",
        "notice.limit_reached": "Limit erreicht (100 %)",
        "notice.included_minutes_exhausted": "Inklusivminuten aufgebraucht",
        "notice.invoice": "Rechnung",
        "notice.payment_failed": "Zahlung fehlgeschlagen",
        "notice.extra_minutes_disabled": "Zusätzliche Minuten ausgeschaltet",
        "notice.resent": "(erneut gesendet)",
        "notfound.title": "Nicht gefunden",
        "notfound.body": "Diese Seite gibt es nicht, oder sie gehört zu einem anderen Konto.",
        "forbidden.title": "Kein Zugriff",
        "forbidden.body": "Diese Seite ist dem Support vorbehalten.",
        "back": "Zurück zur Übersicht",
        "unit.minutes": "Min.",
    },
    "en": {
        "lang.name": "English",
        "skip": "Skip to content",
        "login.title": "Sign in",
        "login.intro": "Sign in with your account details.",
        "login.email": "Email",
        "login.password": "Password",
        "login.submit": "Sign in",
        "login.failed": "Wrong email or password.",
        "login.throttled": "Too many failed attempts. Please try again in {minutes} minutes.",
        "login.expired": "Your session expired. Please try again.",
        "login.code_title": "Enter your code",
        "login.code_intro": (
            "There were many failed sign-ins to this account. If the password was right, "
            "we have emailed you a six-digit code; enter it here."
        ),
        "login.code": "Code from the email",
        "login.code_submit": "Confirm",
        "login.code_wrong": "The code is wrong or has expired.",
        "login.code_expired": "The code has expired. Please sign in again.",
        "login.restart": "Sign in again",
        "logout": "Sign out",
        "signed_in_as": "Signed in as {email}",
        "nav.label": "Main menu",
        "nav.overview": "Overview",
        "nav.extra_minutes": "Extra minutes",
        "nav.invoices": "Invoices",
        "nav.notices": "Notifications",
        "overview.title": "Overview",
        "assistant.intro": "Settings for {product}, your phone assistant.",
        "assistant.open": "Open",
        "assistant.extra_card": (
            "Keep taking calls once your included minutes are used up – with a fixed limit."
        ),
        "status.off": "Off",
        "status.on_limit": "On · limit {limit}",
        "extra.title": "Extra minutes",
        "extra.lead": (
            "When your included minutes are used up, per-minute billing keeps {product} "
            "answering calls – up to the limit you set. Billed once a month through Stripe."
        ),
        "extra.price": "Price per extra minute on your {plan} plan: {price}",
        "extra.not_eligible.title": "Not available on your plan",
        "extra.not_eligible.body": (
            "Your {plan} plan has no monthly fee. Extra minutes are available on every plan "
            "with a monthly fee:"
        ),
        "extra.upgrade": "Change plan",
        "plans.plan": "Plan",
        "plans.fee": "Monthly fee",
        "plans.included": "Included minutes",
        "plans.extra_price": "Price per extra minute",
        "step1": "Step 1",
        "step2": "Step 2",
        "step3": "Step 3",
        "extra.switch": "Enable per-minute billing",
        "extra.switch_hint": (
            "When it is off, {product} stops taking calls once the included minutes are used up."
        ),
        "limit.legend": "Set a limit",
        "limit.hint": (
            "How much extra do you want to spend per billing period at most? At {warn_at} you "
            "get an email, at 100 % {product} stops automatically."
        ),
        "limit.hint_stop_only": (
            "How much extra do you want to spend per billing period at most? At 100 % you get "
            "an email and {product} stops automatically."
        ),
        "limit.unit": "Unit",
        "limit.in_eur": "in euros",
        "limit.in_minutes": "in minutes",
        "limit.value_eur": "Limit in euros",
        "limit.value_minutes": "Limit in minutes",
        "limit.equals_minutes": "buys {minutes} extra minutes",
        "limit.equals_eur": "costs at most {amount}",
        "payment.title": "Add payment details",
        "payment.hint": (
            "Billing runs through Stripe. Your card or bank details go straight to Stripe, "
            "not to us."
        ),
        "payment.on_file": "On file",
        "payment.card": "{brand} •••• {last4}",
        "payment.sepa": "SEPA Direct Debit · IBAN •••• {last4}",
        "payment.change": "Use another payment method",
        "payment.remove": "Remove payment method",
        "payment.remove_hint": "Removing it switches extra minutes off.",
        "payment.method": "Payment method",
        "payment.method_card": "Card",
        "payment.method_sepa": "SEPA Direct Debit",
        "payment.card_label": "Card details",
        "payment.name": "Account holder's name",
        "payment.email": "Email",
        "payment.iban": "IBAN",
        "payment.mandate": (
            "By providing your IBAN and confirming, you authorise {business} and Stripe, our "
            "payment service provider, to send instructions to your bank to debit your "
            "account, and your bank to debit your account in accordance with those "
            "instructions. You are entitled to a refund from your bank under the terms and "
            "conditions of your agreement with your bank. A refund must be claimed within 8 "
            "weeks starting from the date on which your account was debited."
        ),
        "payment.name_missing": "Please enter the account holder's name.",
        "payment.stripe_unavailable": "Stripe could not be loaded. Please reload the page.",
        "payment.save": "Save payment details",
        "payment.working": "Confirming with Stripe …",
        "payment.noscript": (
            "Adding payment details needs JavaScript (Stripe). Every other setting works "
            "without it."
        ),
        "payment.fake_notice": (
            "Test environment: Stripe runs locally (localstripe). Test IBAN "
            "DE89370400440532013000, test card 4242 4242 4242 4242, declined card "
            "4000 0000 0000 0002."
        ),
        "save": "Save",
        "save_and_enable": "Save payment details and enable",
        "flash.saved": "Saved. The change applies immediately.",
        "flash.pm_saved": "Payment method saved.",
        "flash.pm_removed": "Payment method removed. Extra minutes are now off.",
        "error.payment_method_required": (
            "Please add your payment details first (step 3); then per-minute billing is enabled."
        ),
        "error.not_eligible": "Your plan has no monthly fee.",
        "error.invalid_limit": (
            "Please enter a valid limit: 0.01 to {max_eur} or 1 to {max_minutes} minutes."
        ),
        "error.limit_missing": "Please set a limit (step 2).",
        "error.busy": "We are busy right now. Please try again in a moment.",
        "error.stripe": "Stripe did not accept the payment details: {detail}",
        "error.no_payment_method": "No payment method on file.",
        "error.live_unavailable": "Live figures are not available right now.",
        "history.title": "History of changes",
        "history.when": "When",
        "history.who": "Who",
        "history.before": "Before",
        "history.after": "After",
        "history.empty": "No changes yet.",
        "history.you": "You",
        "history.support": "Support",
        "usage.period": "Current billing period: {period}",
        "usage.live": "Updates automatically.",
        "usage.accepting": "{product} is taking calls.",
        "usage.stop.limit_reached": (
            "Limit reached: {product} is not taking calls. Raise the limit to resume at once."
        ),
        "usage.stop.included_minutes_exhausted": (
            "Included minutes used up: {product} is not taking calls. Enable extra minutes to "
            "continue."
        ),
        "usage.stop.payment_overdue": (
            "Payment overdue: extra minutes are suspended until the open invoice is paid."
        ),
        "usage.included": "Included minutes",
        "usage.of_minutes": "{used} of {total} min",
        "usage.extra": "Extra minutes",
        "usage.extra_off": "Per-minute billing is off.",
        "usage.turn_on": "Turn on",
        "usage.change_limit": "Change limit",
        "usage.percent_used": "{percent} % of the limit used",
        "usage.warning_mark": "90 %",
        "usage.warning": "You have reached 90 % of your limit.",
        "usage.cost": "Cost so far",
        "usage.cost_of": "{cost} of {limit}",
        "chart.title": "Usage per day",
        "chart.included": "Included",
        "chart.extra": "Extra",
        "chart.day": "Day",
        "chart.minutes": "Minutes",
        "chart.table": "As a table",
        "invoices.title": "Invoices",
        "invoices.period": "Period",
        "invoices.minutes": "Minutes",
        "invoices.amount": "Amount",
        "invoices.status": "Status",
        "invoices.link": "Invoice",
        "invoices.open_link": "View at Stripe",
        "invoices.empty": (
            "No invoices yet. An invoice is made at the end of each period in which you used "
            "extra minutes."
        ),
        "invoice.paid": "Paid",
        "invoice.open": "Open",
        "invoice.processing": "Direct debit being collected",
        "invoice.payment_failed": "Payment failed",
        "invoice.void": "Void",
        "invoice.draft": "Draft",
        "notices.title": "Notifications",
        "notices.when": "Sent",
        "notices.kind": "Kind",
        "notices.to": "To",
        "notices.empty": "No notifications yet.",
        "notices.failed": "Not delivered",
        "notice.limit_warning": "Limit warning",
        "notice.extra_minutes_enabled": "Extra minutes switched on",
        "notice.payment_method_changed": "Payment method changed",
        "notice.plan_changed": "Plan changed",
        "notice.limit_reached": "Limit reached (100 %)",
        "notice.included_minutes_exhausted": "Included minutes used up",
        "notice.invoice": "Invoice",
        "notice.payment_failed": "Payment failed",
        "notice.extra_minutes_disabled": "Extra minutes switched off",
        "notice.resent": "(resent)",
        "notfound.title": "Not found",
        "notfound.body": "This page does not exist, or it belongs to another account.",
        "forbidden.title": "No access",
        "forbidden.body": "This page is for support staff only.",
        "back": "Back to the overview",
        "unit.minutes": "min",
    },
}
