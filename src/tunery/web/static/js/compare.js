// Compare: the runs' training and validation losses overlaid on one chart.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const source = document.getElementById("compare-data");
  if (!source) return;
  const curves = JSON.parse(source.textContent);
  // One colour per run; validation dashed.
  const palette = ["#0b5cad", "#d1242f", "#1a7f37", "#8250df", "#bc4c00", "#57606a"];
  const labels = [], series = [], colors = [], dashes = [];
  Object.entries(curves).forEach(([run, byName], r) => {
    for (const [name, points] of Object.entries(byName)) {
      if (!points.length) continue;
      labels.push(`${run} ${name === "loss" ? "training" : "validation"}`);
      series.push(points);
      colors.push(palette[r % palette.length]);
      dashes.push(name === "loss" ? undefined : [6, 4]);
    }
  });
  const chart = window.tuneryChart(document.getElementById("compare-chart"), labels, { height: 300, colors, dashes });
  series.forEach((points, i) => points.forEach(([x, y]) => chart.add(i, x, y)));
});
