/*! Recoup template preview — renders the template on sample facts as you type. Part of Recoup (same licence). */
(function () {
  "use strict";
  var form = document.getElementById("template-form");
  if (!form) return;
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var get = function (id) { var el = document.getElementById(id); return el ? el.value : null; };
  var timer = null, seq = 0;
  function update() {
    var mine = ++seq;
    fetch(form.dataset.previewUrl, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ channel: form.elements.channel.value, locale: form.elements.locale.value,
        subject: get("subject"), body: get("body"), html: get("html"), product_type: get("product-type") })
    }).then(function (r) { return r.json(); }).then(function (data) {
      if (mine !== seq) return;
      var problems = document.getElementById("preview-problems");
      problems.textContent = (data.problems || []).map(function (p) {
        return p.field + (p.line ? ":" + p.line : "") + " — " + p.message;
      }).join("\n");
      if (data.text !== undefined) document.getElementById("preview").textContent = data.text;
      var frame = document.getElementById("preview-html");
      if (frame && data.html) frame.srcdoc = data.html;
      var subject = document.getElementById("preview-subject");
      if (subject) subject.textContent = data.subject || "";
      var sms = document.getElementById("sms-info");
      if (sms && data.segments) {
        sms.textContent = sms.dataset.label.replace("{segments}", data.segments)
          .replace("{length}", data.length).replace("{encoding}", data.encoding) +
          (data.segments > 3 ? " " + sms.dataset.warn : "");
        sms.className = "small mt-2 " + (data.segments > 3 ? "text-danger" : "text-muted");
      }
    });
  }
  ["subject", "body", "html", "product-type"].forEach(function (id) {
    var el = document.getElementById(id);
    if (el) el.addEventListener(el.tagName === "SELECT" ? "change" : "input", function () {
      clearTimeout(timer); timer = setTimeout(update, 300);
    });
  });
  update();
})();
