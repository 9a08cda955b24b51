// Line charts on uPlot (vendored under /static/vendor/uplot with its licence).
// chart.add(seriesIndex, x, y) adds a point; the element's data-points counts the points drawn.
// options: height, xLabel, log (y axis), colors and dashes (one per series).
"use strict";
const COLORS = ["#0b5cad", "#d1242f", "#1a7f37", "#8250df", "#bc4c00", "#57606a"];
// Three significant digits, so close ticks (a learning rate decaying from 5e-3) stay apart.
const tick = (value) => (value === null ? "" : Number(value.toPrecision(3)).toString());

window.tuneryChart = function (el, labels, options = {}) {
  const points = labels.map(() => new Map());
  let plot = null;
  let pending = false;
  const height = options.height || 220;
  const palette = options.colors || COLORS;
  const size = () => ({ width: Math.max(el.clientWidth, 240), height });
  const data = () => {
    const xs = [...new Set(points.flatMap((m) => [...m.keys()]))].sort((a, b) => a - b);
    return [xs, ...points.map((m) => xs.map((x) => (m.has(x) ? m.get(x) : null)))];
  };
  const draw = () => {
    pending = false;
    const aligned = data();
    el.dataset.points = String(points.reduce((n, m) => n + m.size, 0));
    if (!aligned[0].length) return;
    if (plot === null) {
      plot = new uPlot({
        ...size(),
        scales: { x: { time: false }, ...(options.log ? { y: { distr: 3 } } : {}) },
        axes: [{ label: options.xLabel || "step" }, { size: 64, values: (u, ticks) => ticks.map(tick) }],
        series: [{ label: options.xLabel || "step" }, ...labels.map((label, i) => ({
          label, stroke: palette[i % palette.length], dash: options.dashes && options.dashes[i],
          width: 2, spanGaps: true, points: { show: true, size: 4 },
        }))],
      }, aligned, el);
    } else {
      plot.setData(aligned);
    }
  };
  window.addEventListener("resize", () => plot && plot.setSize(size()));
  return {
    add(series, x, y) {
      if (x === null || x === undefined || y === null || y === undefined) return;
      points[series].set(Number(x), Number(y));
      if (!pending) { pending = true; requestAnimationFrame(draw); }
    },
    count() { return points.reduce((n, m) => n + m.size, 0); },
  };
};
