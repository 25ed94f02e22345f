/* Overtime web app: progressive enhancement only. Every form works without this file;
   with it, the limit shows its value in the other unit as you type, and payment details
   are collected by Stripe.js (Elements) and confirmed directly with Stripe. */
(function () {
  "use strict";

  // Live panels (htmx polling): skip while the tab is hidden or a table is unfolded.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail && event.detail.elt;
    if (document.hidden || (elt && elt.querySelector && elt.querySelector("details[open]"))) {
      event.preventDefault();
    }
  });

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function postJson(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(body || {}),
    });
  }

  // Same rules as starter/web/i18n.py parse_euros / parse_minutes (the server decides;
  // this only keeps "entspricht …" live): the page's language first ("1.000" is a
  // thousand on a German page), the other one only when the text is malformed in it.
  function amountIn(s, dec, group) {
    var g = "\\" + group, d = "\\" + dec;
    var match = new RegExp("^(\\d{1,3}(?:" + g + "\\d{3})*|\\d+)(?:" + d + "(\\d+))?$").exec(s);
    if (!match) return undefined; // malformed in this language
    if (match[2] && match[2].length > 2) return null; // a third decimal: not a price
    var whole = parseInt(match[1].split(group).join(""), 10);
    return whole * 100 + (match[2] ? parseInt((match[2] + "0").slice(0, 2), 10) : 0);
  }

  function parseEuros(text) {
    var s = String(text).replace(/€|euros?|eur/gi, "").replace(/[\s\u00a0\u202f]/g, "");
    if (!/^[0-9][0-9.,]*$/.test(s)) return null;
    var de = lang !== "en";
    var value = amountIn(s, de ? "," : ".", de ? "." : ",");
    if (value === undefined) value = amountIn(s, de ? "." : ",", de ? "," : ".");
    return value === undefined ? null : value;
  }

  function parseMinutes(text) {
    var s = String(text).replace(/[\s\u00a0\u202f]+/g, " ").trim();
    s = s.replace(/\s*(min\.?|minuten|minutes)$/i, "").replace(/ /g, "");
    if (!/^([0-9]{1,3}([.,])[0-9]{3}(\2[0-9]{3})*|[0-9]+)$/.test(s)) return null;
    return parseInt(s.replace(/[.,]/g, ""), 10);
  }

  var form = document.getElementById("extra-form");
  if (!form) return;

  var lang = form.dataset.lang === "en" ? "en" : "de";
  var locale = lang === "de" ? "de-DE" : "en-IE";
  var price = parseInt(form.dataset.price, 10);
  var base = form.dataset.base;
  var hasPaymentMethod = form.dataset.hasPaymentMethod === "true";
  var money = new Intl.NumberFormat(locale, { style: "currency", currency: "EUR" });
  var enabled = document.getElementById("enabled");
  var limitStep = document.getElementById("limit-step");
  var value = document.getElementById("limit-value");
  var label = document.getElementById("limit-label");
  var suffix = document.getElementById("limit-suffix");
  var equals = document.getElementById("limit-equals");
  var save = document.getElementById("save");

  function unit() {
    var checked = form.querySelector('input[name="limit_unit"]:checked');
    return checked ? checked.value : "eur";
  }

  function minutesFloor(seconds) {
    var tenths = Math.floor(seconds / 6);
    var whole = Math.floor(tenths / 10).toLocaleString(locale);
    return whole + (lang === "de" ? "," : ".") + (tenths % 10);
  }

  function euroInput(cents) {
    var text = (cents / 100).toFixed(2);
    return lang === "de" ? text.replace(".", ",") : text;
  }

  function update() {
    var u = unit();
    label.textContent = u === "eur" ? label.dataset.eur : label.dataset.minutes;
    suffix.textContent = u === "eur" ? "€" : suffix.dataset.minutes;
    var text = "";
    if (u === "eur") {
      var cents = parseEuros(value.value);
      if (cents) text = equals.dataset.eurTemplate.replace("{minutes}", minutesFloor(Math.floor((cents * 60) / price)));
    } else {
      var minutes = parseMinutes(value.value);
      if (minutes) text = equals.dataset.minutesTemplate.replace("{amount}", money.format((minutes * price) / 100));
    }
    equals.textContent = text;
    limitStep.disabled = !enabled.checked;
    var firstTime = enabled.checked && !hasPaymentMethod;
    save.textContent = firstTime ? form.dataset.labelEnable : form.dataset.labelSave;
    // Switching on for the first time: one button does both (Stripe, then the settings).
    var paymentSave = document.getElementById("payment-save");
    if (paymentSave) paymentSave.hidden = firstTime;
  }

  // Switching the unit carries the amount over (50 € at 0,39 €/min → 128 minutes).
  form.querySelectorAll('input[name="limit_unit"]').forEach(function (radio) {
    radio.addEventListener("change", function () {
      if (radio.value === "minutes") {
        var cents = parseEuros(value.value);
        if (cents) value.value = String(Math.floor(cents / price));
      } else {
        var minutes = parseMinutes(value.value);
        if (minutes) value.value = euroInput(minutes * price);
      }
      update();
    });
  });
  value.addEventListener("input", update);
  enabled.addEventListener("change", update);
  update();

  // --- payment details through Stripe.js ---------------------------------------------
  var box = document.getElementById("stripe-box");
  var errorBox = document.getElementById("payment-error");
  var working = document.getElementById("payment-working");
  var paymentSave = document.getElementById("payment-save");
  var fake = box.dataset.fake === "true";
  var stripe = null;
  var cardElement = null;
  var ibanElement = null;

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function pmType() {
    var checked = box.querySelector('input[name="pm_type"]:checked');
    return checked ? checked.value : "sepa_debit";
  }

  function showType() {
    var sepa = pmType() === "sepa_debit";
    document.getElementById("sepa-fields").hidden = !sepa;
    document.getElementById("card-fields").hidden = sepa;
  }

  function initStripe() {
    if (typeof window.Stripe !== "function") {
      showError(box.dataset.unavailable);
      return;
    }
    // Stripe's own texts (errors, placeholders, the mandate) in the page's language. The
    // fake's stand-in, Stripe = (apiKey) => {...}, ignores the options it is given.
    stripe = window.Stripe(box.dataset.key, { locale: lang });
    if (fake) {
      // localstripe's stand-in: its elements() makes card fields only; the IBAN is a
      // plain input (never sent to our server) passed to confirmSepaDebitSetup below.
      cardElement = stripe.elements({ locale: lang }).create("card");
      cardElement.mount("#card-element");
      document.querySelectorAll("#card-element input").forEach(function (input) {
        input.setAttribute("aria-label", input.getAttribute("placeholder"));
      });
    } else {
      var elements = stripe.elements({ locale: lang });
      cardElement = elements.create("card", { hidePostalCode: true });
      cardElement.mount("#card-element");
      ibanElement = elements.create("iban", { supportedCountries: ["SEPA"], placeholderCountry: "DE" });
      ibanElement.mount("#iban-element");
    }
  }

  // A card its bank refuses (Stripe.js: type "card_error") is explained in our words
  // (data-declines: Stripe's decline_code or code → the sentence, in the page's
  // language, "nothing was saved" included); other errors keep Stripe's message.
  var declines = JSON.parse(box.dataset.declines || "{}");

  function stripeErrorMessage(error) {
    var text = declines[error.decline_code] || declines[error.code];
    if (!text && error.type === "card_error") text = declines.generic_decline;
    return text || error.message || String(error);
  }

  async function errorMessage(response) {
    try {
      var body = await response.json();
      return body.message || body.detail || body.error || response.statusText;
    } catch (e) {
      return response.statusText;
    }
  }

  // Confirm a SetupIntent in the browser, then tell our server the payment method id.
  async function savePaymentMethod() {
    showError("");
    paymentSave.disabled = true;
    save.disabled = true;
    working.textContent = working.dataset.text;
    try {
      if (!stripe) throw new Error(box.dataset.unavailable);
      var intent = await postJson(base + "/payment/setup-intent");
      if (!intent.ok) throw new Error(await errorMessage(intent));
      var secret = (await intent.json()).client_secret;
      var email = document.getElementById("sepa-email").value.trim() || box.dataset.email;
      var result;
      if (pmType() === "sepa_debit") {
        var name = document.getElementById("sepa-name").value.trim();
        if (!name) {
          document.getElementById("sepa-name").focus();
          throw new Error(box.dataset.nameMissing);
        }
        var iban = fake ? { iban: document.getElementById("iban-input").value.replace(/\s+/g, "") } : ibanElement;
        result = await stripe.confirmSepaDebitSetup(secret, {
          payment_method: { sepa_debit: iban, billing_details: { name: name, email: email } },
        });
      } else {
        result = await stripe.confirmCardSetup(secret, {
          payment_method: { card: cardElement, billing_details: { email: email } },
        });
      }
      if (result.error) throw new Error(stripeErrorMessage(result.error));
      var method = result.setupIntent.payment_method;
      var stored = await postJson(base + "/payment/method", {
        payment_method_id: typeof method === "string" ? method : method.id,
      });
      if (!stored.ok) throw new Error(await errorMessage(stored));
      hasPaymentMethod = true;
      return true;
    } catch (err) {
      showError(err && err.message ? err.message : String(err));
      return false;
    } finally {
      working.textContent = "";
      paymentSave.disabled = false;
      save.disabled = false;
    }
  }

  box.hidden = false;
  box.querySelectorAll('input[name="pm_type"]').forEach(function (radio) {
    radio.addEventListener("change", showType);
  });
  showType();
  initStripe();

  paymentSave.addEventListener("click", async function () {
    if (await savePaymentMethod()) window.location.reload();
  });

  // Enter inside the payment fields saves the payment details, not the whole form.
  box.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && event.target.tagName === "INPUT" && event.target.type !== "radio") {
      event.preventDefault();
      paymentSave.click();
    }
  });

  // Switch on + limit + no payment method yet: Stripe first, then save "enabled".
  form.addEventListener("submit", async function (event) {
    if (!enabled.checked || hasPaymentMethod) return;
    event.preventDefault();
    var valid = unit() === "eur" ? parseEuros(value.value) : parseMinutes(value.value);
    if (!valid) {
      showError(form.dataset.limitMissing);
      value.focus();
      return;
    }
    if (await savePaymentMethod()) form.submit();
  });
})();
