/* The payment page: one submit per click, and card/bank fields tokenized by Collect.js before submitting.
 * The card number and security code never reach our server: the form carries only the single-use token. */
(function () {
  "use strict";
  var forms = Array.prototype.slice.call(document.querySelectorAll("form.js-pay"));
  var CARD = ["ccnumber", "ccexp", "cvv"];
  var CHECK = ["checkname", "checkaba", "checkaccount"];
  var pending = null;  // the form waiting for a token

  function busy(form, on) {
    var button = form.querySelector("button[type=submit]");
    if (!button) { return; }
    if (on) {
      button.dataset.label = button.dataset.label || button.textContent;
      button.textContent = button.dataset.busy || "Please wait…";
      button.disabled = true;
      form.setAttribute("aria-busy", "true");
    } else {
      button.textContent = button.dataset.label || button.textContent;
      button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  }

  function showError(form, message) {
    var box = form.querySelector("[data-error]");
    if (box) { box.textContent = message; box.hidden = !message; }
  }

  var FIELD_NAMES = {ccnumber: "card number", ccexp: "expiry date", cvv: "security code",
                     checkname: "name on the account", checkaba: "routing number", checkaccount: "account number"};

  function setUpCollect() {
    if (!window.CollectJS) {
      forms.forEach(function (form) {
        if (form.dataset.tokenize) {
          var note = form.querySelector(".js-needed");
          if (note) { note.hidden = false; }
          var button = form.querySelector("button[type=submit]");
          if (button) { button.disabled = true; }
        }
      });
      return;
    }
    var fields = {};
    CARD.concat(CHECK).forEach(function (name) {
      if (document.getElementById(name)) {
        fields[name] = {selector: "#" + name, labelledBy: name + "-label",
                        placeholder: {ccnumber: "1234 1234 1234 1234", ccexp: "MM/YY", cvv: "123"}[name] || ""};
      }
    });
    window.CollectJS.configure({
      variant: "inline",
      fields: fields,
      callback: function (response) {
        var form = pending;
        pending = null;
        if (!form) { return; }
        form.querySelector("input[name=payment_token]").value = response.token;
        var last4 = form.querySelector("input[name=card_last4]");
        var brand = form.querySelector("input[name=card_brand]");
        var card = response.card || {};
        var check = response.check || {};
        var shown = card.number || check.account || "";
        if (last4) { last4.value = shown.slice(-4); }
        if (brand) { brand.value = card.type || ""; }
        form.submit();
      },
      validationCallback: function (field, valid, message) {
        if (valid || !pending) { return; }
        var form = pending;
        pending = null;
        busy(form, false);
        var what = FIELD_NAMES[field];
        showError(form, message ? message + "." : "Please check the " + (what || "details") + ".");
        var input = document.getElementById("CollectJS" + field);
        if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
      }
    });
  }

  forms.forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.submitted) { event.preventDefault(); return; }  // a double click: one submit
      if (form.dataset.tokenize) {
        event.preventDefault();
        if (!window.CollectJS || pending) { return; }
        showError(form, "");
        busy(form, true);
        pending = form;
        window.CollectJS.startPaymentRequest(form.dataset.tokenize === "check" ? CHECK : CARD);
        return;
      }
      form.dataset.submitted = "1";
      busy(form, true);
    });
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUpCollect);
  } else {
    setUpCollect();
  }
  // back/forward cache: a page restored after a submit must be usable again
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) {
      forms.forEach(function (form) { delete form.dataset.submitted; busy(form, false); });
    }
  });
})();
