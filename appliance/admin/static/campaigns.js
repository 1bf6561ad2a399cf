// The campaign page's outcomes-over-time chart, from the canvas's data-chart attribute.
"use strict";

const COLOURS = ["#1f6feb", "#98a2b3", "#12b76a", "#7a5af8", "#f79009", "#d92d20",
  "#667085", "#fdb022", "#53389e", "#0e9384", "#b42318"];

document.addEventListener("DOMContentLoaded", () => {
  const canvas = document.getElementById("campaign-chart");
  if (!canvas || typeof Chart === "undefined") return;
  const data = JSON.parse(canvas.dataset.chart);
  const datasets = Object.entries(data.series)
    .filter(([, values]) => values.some((v) => v > 0))
    .map(([label, values], i) => ({ label, data: values, backgroundColor: COLOURS[i % COLOURS.length], stack: "o" }));
  new Chart(canvas, {
    type: "bar",
    data: { labels: data.labels, datasets },
    options: { animation: false, scales: { y: { stacked: true, beginAtZero: true, title: { display: true, text: "attempts" } } } },
  });
});
