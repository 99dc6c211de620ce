// The recovery dashboard's charts (Chart.js, vendored) and its sortable table. The numbers come from the page
// (#dashboard-data); every chart has a table beside it with the same numbers.
(function () {
  "use strict";
  var data = document.getElementById("dashboard-data");
  var me = document.currentScript;
  var labels = JSON.parse(me.getAttribute("data-labels"));
  var colours = { recovered: "#1b7f3b", elsewhere: "#6c757d", open: "#0b5cad", lost: "#b3261e" };

  if (data && window.Chart) {
    var charts = JSON.parse(data.textContent);
    var currencies = charts.currencies;  // most failures first
    if (currencies.length) {
      var first = charts.cohorts[currencies[0]];
      new Chart(document.getElementById("cohort-chart"), {
        type: "bar",
        data: {
          labels: first.weeks,
          datasets: ["recovered", "elsewhere", "open", "lost"].map(function (key) {
            return { label: labels[key] + " (" + currencies[0] + ")", data: first[key], backgroundColor: colours[key] };
          })
        },
        options: { animation: false, maintainAspectRatio: false, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } }
      });
    }
    var channels = Object.keys(charts.funnel);
    if (channels.length) {
      var palette = ["#0b5cad", "#1b7f3b", "#8a4baf", "#b3261e"];
      new Chart(document.getElementById("funnel-chart"), {
        type: "bar",
        data: {
          labels: labels.steps,
          datasets: channels.map(function (channel, i) {
            return { label: channel, data: charts.funnel[channel], backgroundColor: palette[i % palette.length] };
          })
        },
        options: { animation: false, maintainAspectRatio: false, scales: { y: { beginAtZero: true } } }
      });
    }
  }

  // a header button sorts its column (numbers by value), and says how it is sorted
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th button.sort").forEach(function (button, column) {
      button.addEventListener("click", function () {
        var th = button.parentElement;
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var numeric = button.hasAttribute("data-numeric");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[column], y = b.cells[column];
          var order = numeric
            ? parseFloat(x.getAttribute("data-value")) - parseFloat(y.getAttribute("data-value"))
            : x.textContent.localeCompare(y.textContent);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
})();
