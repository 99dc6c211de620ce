// An experiment's chart: the cumulative recovery rate of each arm by day (Chart.js, vendored). The numbers come
// from the page (#experiment-data); the table under the chart holds the same numbers.
(function () {
  "use strict";
  var data = document.getElementById("experiment-data");
  var canvas = document.getElementById("experiment-chart");
  if (!data || !canvas || !window.Chart) { return; }
  var chart = JSON.parse(data.textContent);
  var palette = ["#0b5cad", "#1b7f3b", "#8a4baf", "#b3261e", "#6c757d"];
  var days = {};
  chart.arms.forEach(function (arm) { (chart.series[arm] || []).forEach(function (p) { days[p[0]] = true; }); });
  var labels = Object.keys(days).sort();
  new Chart(canvas, {
    type: "line",
    data: {
      labels: labels,
      datasets: chart.arms.map(function (arm, i) {
        var byDay = {};
        (chart.series[arm] || []).forEach(function (p) { byDay[p[0]] = p[1]; });
        return { label: arm, data: labels.map(function (d) { return d in byDay ? byDay[d] : null; }),
                 borderColor: palette[i % palette.length], backgroundColor: palette[i % palette.length],
                 spanGaps: true, pointRadius: 2 };
      })
    },
    options: { animation: false, maintainAspectRatio: false, scales: { y: { beginAtZero: true, title: { display: true, text: "%" } } } }
  });
})();
