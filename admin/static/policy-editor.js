/*! Recoup policy editor — syntax highlighting and live checking for the policy language.
 *  Part of Recoup (same licence as the project). No dependencies.
 *  A transparent <textarea> sits over a highlighted <pre>; problems from the server's check are underlined
 *  at their line and column, marked in the gutter, and listed below (click one to jump to it). */
(function () {
  "use strict";
  var root = document.getElementById("policy-editor");
  if (!root) return;
  var input = root.querySelector("textarea");
  var code = root.querySelector(".pe-highlight code");
  var pre = root.querySelector(".pe-highlight");
  var gutter = root.querySelector(".pe-gutter");
  var panel = document.getElementById("problems");
  var cursor = document.getElementById("cursor-pos");
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var diagnostics = [];
  var seq = 0, timer = null;

  var KEYWORDS = /^(policy|segment|when|otherwise|business|hours|quiet|in|skip|holidays|weekends|cadence|max|min|gap|per|hour|day|week|across|all|channels|override|ignore|holdout|offers|offer|plan|for|priority|step|after|via|template|variants|retry|payment|escalate|to|give|up|end|and|or|not|has|between)$/;
  var RULES = [
    ["comment", /#.*/y],
    ["string", /"[^"\n]*"?/y],
    ["field", /[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+/y],
    ["number", /\d{1,2}:\d\d(?![0-9])|\d+(\.\d+)?(%|[mhdw](?![A-Za-z0-9_]))?(\s+[A-Z]{3}(?![A-Za-z]))?/y],
    ["word", /[A-Za-z_][A-Za-z0-9_]*/y],
    ["op", /==|!=|<=|>=|[<>:,\-\[\]()]/y],
    ["space", /\s+/y],
    ["other", /./y]
  ];

  function esc(s) { return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }

  function classesFor(line) {
    var classes = new Array(line.length), pos = 0;
    while (pos < line.length) {
      for (var r = 0; r < RULES.length; r++) {
        var re = RULES[r][1]; re.lastIndex = pos;
        var m = re.exec(line);
        if (!m || !m[0].length) continue;
        var cls = RULES[r][0];
        if (cls === "word") cls = KEYWORDS.test(m[0]) ? "kw" : (/^(true|false)$/.test(m[0]) ? "number" : "name");
        for (var i = pos; i < pos + m[0].length; i++) classes[i] = cls;
        pos += m[0].length;
        break;
      }
    }
    return classes;
  }

  function highlightLine(line, marks) {
    var classes = classesFor(line), err = new Array(line.length), eol = "";
    marks.forEach(function (d) {
      var start = Math.max(0, d.col - 1);
      if (start >= line.length) { eol = d.severity; return; } // e.g. something missing at the end of the line
      var end = start;
      while (end < line.length && !/\s/.test(line[end])) end++;
      if (end === start) end = start + 1;
      for (var i = start; i < end; i++) err[i] = d.severity;
    });
    var html = "", i = 0;
    while (i < line.length) {
      var cls = classes[i] || "", e = err[i] || "", j = i;
      while (j < line.length && (classes[j] || "") === cls && (err[j] || "") === e) j++;
      var names = [cls ? "t-" + cls : "", e ? "pe-" + e : ""].join(" ").trim();
      html += names ? '<span class="' + names + '">' + esc(line.slice(i, j)) + "</span>" : esc(line.slice(i, j));
      i = j;
    }
    if (eol) html += '<span class="pe-' + eol + '"> </span>';
    return html;
  }

  function render() {
    var lines = input.value.split("\n");
    var byLine = {};
    diagnostics.forEach(function (d) { (byLine[d.line] = byLine[d.line] || []).push(d); });
    code.innerHTML = lines.map(function (line, n) { return highlightLine(line, byLine[n + 1] || []); }).join("\n") + "\n";
    var g = "";
    for (var n = 1; n <= lines.length; n++) {
      var ds = byLine[n];
      var kind = ds ? (ds.some(function (d) { return d.severity === "error"; }) ? "error" : "warning") : "";
      g += '<div class="pe-ln' + (kind ? " pe-ln-" + kind : "") + '"' +
        (ds ? ' title="' + esc(ds.map(function (d) { return d.message; }).join("\n")).replace(/"/g, "&quot;") + '"' : "") +
        ">" + n + "</div>";
    }
    gutter.innerHTML = g;
    syncScroll();
  }

  function syncScroll() {
    pre.scrollTop = input.scrollTop; pre.scrollLeft = input.scrollLeft;
    gutter.scrollTop = input.scrollTop;
  }

  function fmt(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, k) { return values[k]; });
  }

  function showProblems() {
    if (!diagnostics.length) {
      panel.className = "pe-problems pe-ok";
      panel.textContent = "✓ " + panel.dataset.ok;
      return;
    }
    panel.className = "pe-problems pe-has-problems";
    panel.innerHTML = "";
    var list = document.createElement("ul");
    diagnostics.forEach(function (d) {
      var item = document.createElement("li");
      item.className = "pe-problem pe-problem-" + d.severity;
      item.dataset.line = d.line; item.dataset.col = d.col;
      var where = document.createElement("button");
      where.type = "button"; where.className = "btn btn-link p-0 pe-where";
      where.textContent = fmt(panel.dataset.line, { line: d.line, col: d.col });
      where.addEventListener("click", function () { jumpTo(d.line, d.col); });
      var label = document.createElement("strong");
      label.textContent = (d.severity === "error" ? panel.dataset.error : panel.dataset.warning) + ": ";
      item.appendChild(where); item.appendChild(document.createTextNode(" — ")); item.appendChild(label);
      item.appendChild(document.createTextNode(d.message));
      list.appendChild(item);
    });
    panel.appendChild(list);
  }

  function jumpTo(line, col) {
    var lines = input.value.split("\n"), offset = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
    offset += Math.max(0, col - 1);
    input.focus(); input.setSelectionRange(offset, offset);
    var lineHeight = parseFloat(getComputedStyle(input).lineHeight) || 20;
    input.scrollTop = Math.max(0, (line - 5) * lineHeight);
    syncScroll(); showCursor();
  }

  function showCursor() {
    if (!cursor || !cursor.dataset.label) return;
    var before = input.value.slice(0, input.selectionStart).split("\n");
    cursor.textContent = fmt(cursor.dataset.label, { line: before.length, col: before[before.length - 1].length + 1 });
  }

  function check() {
    if (!root.dataset.checkUrl || !panel) return; // read-only view of a stored version
    var mine = ++seq;
    panel.classList.add("pe-checking");
    fetch(root.dataset.checkUrl, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ source: input.value })
    }).then(function (r) { return r.json(); }).then(function (data) {
      if (mine !== seq) return; // a newer check is on its way
      diagnostics = data.diagnostics || [];
      var power = document.getElementById("experiment-power");
      if (power) { power.textContent = data.power || ""; power.hidden = !data.power; }
      panel.classList.remove("pe-checking");
      render(); showProblems();
      root.dataset.checked = String(mine);
    }).catch(function () { panel.classList.remove("pe-checking"); });
  }

  input.addEventListener("input", function () {
    // keep old marks on lines above the edit; they are re-checked in a moment
    render(); showCursor();
    clearTimeout(timer); timer = setTimeout(check, 350);
  });
  input.addEventListener("scroll", syncScroll);
  input.addEventListener("keyup", showCursor);
  input.addEventListener("click", showCursor);
  input.addEventListener("keydown", function (e) {
    if (e.key === "Tab" && !e.shiftKey && !input.readOnly) {
      e.preventDefault();
      var s = input.selectionStart;
      input.setRangeText("  ", s, input.selectionEnd, "end");
      input.dispatchEvent(new Event("input"));
    }
  });

  var submitForm = document.getElementById("submit-form");
  if (submitForm) submitForm.addEventListener("submit", function () {
    document.getElementById("submit-source").value = input.value;
  });

  var simButton = document.getElementById("run-simulation");
  if (simButton) simButton.addEventListener("click", function () {
    var out = document.getElementById("simulation");
    var body = new FormData();
    body.append("source", input.value);
    body.append("days", document.getElementById("sim-days").value);
    body.append("csrf_token", csrf);
    simButton.disabled = true;
    out.innerHTML = '<div class="text-muted">…</div>';
    fetch(simButton.dataset.url, { method: "POST", body: body, credentials: "same-origin", headers: { "X-CSRFToken": csrf } })
      .then(function (r) { return r.text(); })
      .then(function (html) { out.innerHTML = html; out.scrollIntoView({ behavior: "smooth", block: "start" }); })
      .finally(function () { simButton.disabled = false; });
  });

  render();
  check();
})();
