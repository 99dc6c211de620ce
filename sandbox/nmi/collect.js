/* Recoup sandbox: a Collect.js look-alike (see sandbox/nmi/collect.py).
 *
 *   <script src=".../token/Collect.js" data-tokenization-key="..."></script>
 *   CollectJS.configure({
 *     variant: "inline",
 *     fields: {ccnumber: {selector: "#ccnumber", title: "Card number", placeholder: "0000 0000 0000 0000"},
 *              ccexp: {...}, cvv: {...}, checkname: {...}, checkaba: {...}, checkaccount: {...}},
 *     callback: function (response) { response.token ... },
 *     validationCallback: function (field, valid, message) { ... }
 *   });
 *   CollectJS.startPaymentRequest();          // tokenizes what was typed, calls callback
 *
 * What the customer types is posted from the browser to the tokenizer only; the inputs have no name, so a
 * form submit never carries them to the merchant's server.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var key = script ? script.getAttribute("data-tokenization-key") : "";
  var origin = script ? new URL(script.src, document.baseURI).origin : "";
  var AUTOCOMPLETE = {ccnumber: "cc-number", ccexp: "cc-exp", cvv: "cc-csc", checkname: "name",
                      checkaba: "off", checkaccount: "off"};
  var NUMERIC = {ccnumber: 1, ccexp: 1, cvv: 1, checkaba: 1, checkaccount: 1};
  var inputs = {};
  var config = null;
  var busy = false;

  function mount(name, spec) {
    var holder = document.querySelector(spec.selector);
    if (!holder) { return; }
    holder.textContent = "";
    var input = document.createElement("input");
    input.type = "text";
    input.id = "CollectJS" + name;
    input.className = "CollectJSInlineField";
    input.setAttribute("autocomplete", AUTOCOMPLETE[name] || "off");
    input.setAttribute("spellcheck", "false");
    if (NUMERIC[name]) { input.setAttribute("inputmode", "numeric"); }
    if (spec.placeholder) { input.placeholder = spec.placeholder; }
    var labelledBy = holder.getAttribute("aria-labelledby") || spec.labelledBy;
    if (labelledBy) { input.setAttribute("aria-labelledby", labelledBy); }
    else if (spec.title) { input.setAttribute("aria-label", spec.title); }
    var describedBy = holder.getAttribute("aria-describedby");
    if (describedBy) { input.setAttribute("aria-describedby", describedBy); }
    input.addEventListener("blur", function () {
      if (config && config.validationCallback) { config.validationCallback(name, input.value !== "", ""); }
    });
    holder.appendChild(input);
    inputs[name] = input;
  }

  function fail(field, message) {
    busy = false;
    if (config && config.validationCallback) { config.validationCallback(field, false, message); }
    if (config && config.timeoutCallback && !field) { config.timeoutCallback(); }
  }

  window.CollectJS = {
    config: null,
    configure: function (options) {
      config = options || {};
      this.config = config;
      inputs = {};
      var fields = config.fields || {};
      Object.keys(fields).forEach(function (name) { mount(name, fields[name]); });
      if (config.fieldsAvailableCallback) { config.fieldsAvailableCallback(); }
    },
    /* which fields to send: all mounted ones, or only those named (the page may hold card and bank fields) */
    startPaymentRequest: function (only) {
      if (busy) { return; }
      busy = true;
      var body = {tokenization_key: key};
      Object.keys(inputs).forEach(function (name) {
        if (!only || only.indexOf(name) >= 0) { body[name] = inputs[name].value; }
      });
      fetch(origin + "/token/api/tokenize", {
        method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
        mode: "cors", credentials: "omit"
      }).then(function (answer) {
        return answer.json().then(function (data) { return {ok: answer.ok, data: data}; });
      }).then(function (result) {
        if (!result.ok) { fail(result.data.field, result.data.error); return; }
        busy = false;
        if (config && config.callback) { config.callback(result.data); }
      }).catch(function () { fail(null, "The payment service could not be reached"); });
    },
    clearInputs: function () {
      Object.keys(inputs).forEach(function (name) { inputs[name].value = ""; });
    }
  };
})();
