// Metric charts (Chart.js from Debian's libjs-chart.js, the global `Chart`). Each curve is fetched
// downsampled on the server (GetMetricHistory max_points: per bucket of steps the minimum and
// maximum, and always the last point), so a million points cost a thousand; dragging across the
// chart zooms in and fetches the visible steps again at full detail; a double click zooms out.
import {call} from './api.js';
import {h, number} from './ui.js';

const PALETTE = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22',
  '#17becf'
];
export function color(i) {
  return i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.5) % 360}, 60%, 45%)`;
}

// Points per curve: enough for a chart a few thousand pixels wide.
export const MAX_POINTS = 1000;

async function history(runId, key, range) {
  const request = {runId, key, maxPoints: MAX_POINTS};
  if (range) {
    request.minStep = String(Math.floor(range[0]));
    request.maxStep = String(Math.ceil(range[1]));
  }
  const response = await call('metadata', 'GetMetricHistory', request);
  return (response.metrics || []).map((m) => ({x: Number(m.step || 0), y: Number(m.value)}));
}

// A chart of one metric key over several runs: curves = [{runId, label}].
export class MetricChart {
  constructor(key, curves) {
    this.key = key;
    this.curves = curves;
    this.range = null;
    this.canvas = h('canvas', {'aria-label': `${key} by step`, role: 'img'});
    this.band = h('div', {class: 'zoom-band', hidden: true});
    this.status = h('span', {class: 'muted chart-status'});
    this.element =
        h('figure', {class: 'chart', 'data-key': key},
          h('figcaption', {}, h('b', {}, key), ' ', this.status),
          h('div', {class: 'chart-area'}, this.canvas, this.band));
    this.chart = new Chart(this.canvas, {
      type: 'line',
      data: {
        datasets: curves.map((c, i) => ({
                               label: c.label,
                               data: [],
                               borderColor: color(i),
                               backgroundColor: color(i),
                               borderWidth: 1.2,
                               // A curve of a few points shows them as dots.
                               pointRadius: (context) => context.dataset.data.length <= 50 ? 2 : 0,
                               spanGaps: true,
                             }))
      },
      options: {
        animation: false,
        parsing: false,
        normalized: true,
        responsive: true,
        maintainAspectRatio: false,
        interaction: {mode: 'nearest', intersect: false},
        scales: {x: {type: 'linear', title: {display: true, text: 'step'}}},
        plugins: {
          legend: {display: curves.length <= 12, position: 'bottom'},
          tooltip: {callbacks: {label: (c) => `${c.dataset.label}: ${number(c.parsed.y)}`}}
        },
      },
    });
    this.bindZoom();
  }

  async load() {
    const started = performance.now();
    const range = this.range;
    const data = await Promise.all(this.curves.map((c) => history(c.runId, this.key, range)));
    if (range !== this.range) return;  // zoomed again meanwhile
    let points = 0;
    data.forEach((d, i) => {
      this.chart.data.datasets[i].data = d;
      points += d.length;
    });
    this.chart.options.scales.x.min = range ? range[0] : undefined;
    this.chart.options.scales.x.max = range ? range[1] : undefined;
    this.chart.update('none');
    this.canvas.dataset.curves = String(data.filter((d) => d.length).length);
    this.canvas.dataset.points = String(points);
    performance.mark('mlops-chart-drawn');
    this.status.textContent = (range ? `steps ${range[0]}–${range[1]} · ` : '') +
        `${points} points · ${Math.round(performance.now() - started)} ms` +
        (range ? ' · double-click to zoom out' : ' · drag to zoom');
  }

  bindZoom() {
    let start = null;
    const x = (event) => event.offsetX;
    this.canvas.addEventListener('mousedown', (event) => {
      start = x(event);
      Object.assign(this.band.style, {left: start + 'px', width: '0px'});
      this.band.hidden = false;
    });
    this.canvas.addEventListener('mousemove', (event) => {
      if (start === null) return;
      const a = Math.min(start, x(event)), b = Math.max(start, x(event));
      Object.assign(this.band.style, {left: a + 'px', width: b - a + 'px'});
    });
    const end = (event) => {
      if (start === null) return;
      const a = Math.min(start, x(event)), b = Math.max(start, x(event));
      start = null;
      this.band.hidden = true;
      if (b - a < 5) return;
      const scale = this.chart.scales.x;
      this.zoom([scale.getValueForPixel(a), scale.getValueForPixel(b)]);
    };
    this.canvas.addEventListener('mouseup', end);
    this.canvas.addEventListener('mouseleave', () => {
      start = null;
      this.band.hidden = true;
    });
    this.canvas.addEventListener('dblclick', () => this.zoom(null));
  }

  zoom(range) {
    this.range = range ? [Math.floor(range[0]), Math.ceil(range[1])] : null;
    return this.load();
  }

  destroy() {
    this.chart.destroy();
  }
}
