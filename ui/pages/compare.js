// Runs side by side, from any experiments (up to 500): overlaid curves per metric, the params that
// differ, and parallel coordinates of params and final metrics.
import {call} from '../api.js';
import {color, MetricChart} from '../charts.js';
import {h, link, number, section, table} from '../ui.js';

import {MAX_COMPARE} from './runs.js';

async function getRuns(ids, signal) {
  const runs = new Array(ids.length);
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const i = next++;
      runs[i] = await call('metadata', 'GetRun', {runId: ids[i]}, {signal});
    }
  };
  await Promise.all(Array.from({length: Math.min(8, ids.length)}, worker));
  return runs;
}

function lastValue(run, key) {
  const m = (run.latestMetrics || []).find((x) => x.key === key);
  return m ? Number(m.value) : NaN;
}

// Parallel coordinates (d3 3.5 from Debian's libjs-d3): one vertical axis per numeric param and
// metric, one line per run in the run's colour.
function parallel(runs, dims) {
  const width = Math.max(600, dims.length * 120), height = 320, margin = 30;
  const svg = d3.select(document.createElementNS('http://www.w3.org/2000/svg', 'svg'))
                  .attr('class', 'parallel')
                  .attr('width', width)
                  .attr('height', height + 2 * margin)
                  .attr('viewBox', `0 0 ${width} ${height + 2 * margin}`);
  const x = d3.scale.ordinal().domain(dims.map((d) => d.name)).rangePoints([
    margin * 2, width - margin * 2
  ]);
  const y = {};
  for (const d of dims) {
    const values = runs.map(d.value).filter((v) => !isNaN(v));
    y[d.name] = d3.scale.linear().domain(d3.extent(values)).range([height + margin, margin]).nice();
  }
  const line = d3.svg.line();
  svg.append('g')
      .selectAll('path')
      .data(runs)
      .enter()
      .append('path')
      .attr('class', 'pc-line')
      .attr(
          'd',
          (run) => line(dims.filter((d) => !isNaN(d.value(run)))
                            .map((d) => [x(d.name), y[d.name](d.value(run))])))
      .attr('stroke', (run, i) => color(i))
      .append('title')
      .text((run) => run.name || run.id);
  const axis = svg.selectAll('.pc-axis')
                   .data(dims)
                   .enter()
                   .append('g')
                   .attr('class', 'pc-axis')
                   .attr('transform', (d) => `translate(${x(d.name)},0)`);
  axis.each(function(d) {
    d3.select(this).call(d3.svg.axis().scale(y[d.name]).orient('left').ticks(6));
  });
  axis.append('text').attr('y', margin - 10).attr('text-anchor', 'middle').text((d) => d.name);
  return svg.node();
}

export async function render(main, params, context) {
  const ids = (params.runs || '').split(',').filter(Boolean).slice(0, MAX_COMPARE);
  if (!ids.length) {
    main.replaceChildren(h('p', {}, 'Select runs in a runs table, then Compare.'));
    return null;
  }
  const runs = await getRuns(ids, context.signal);
  const label = (r) => r.name || r.id.slice(-8);

  // Params: those that differ (all of them on demand).
  const paramKeys = [...new Set(runs.flatMap((r) => Object.keys(r.params || {})))].sort();
  const differs = paramKeys.filter((k) => new Set(runs.map((r) => (r.params || {})[k])).size > 1);
  const metricKeys =
      [...new Set(runs.flatMap((r) => (r.latestMetrics || []).map((m) => m.key)))].sort();
  const paramsBox = h('div', {});
  const drawParams = (all) => {
    const keys = all ? paramKeys : differs;
    paramsBox.replaceChildren(
        h('label', {},
          h('input',
            {type: 'checkbox', checked: all, onchange: (e) => drawParams(e.target.checked)}),
          ` show all ${paramKeys.length} params (${differs.length} differ)`),
        h('div', {class: 'scroll-x'},
          table(
              [
                {
                  title: '',
                  value: (r) =>
                      h('span', {class: 'swatch', style: `background:${color(runs.indexOf(r))}`})
                },
                {title: 'Run', value: (r) => link({view: 'run', id: r.id}, label(r))},
                {
                  title: 'Experiment',
                  value: (r) =>
                      link({view: 'runs', experiments: r.experimentId}, r.experimentId.slice(-8))
                },
                ...keys.map((k) => ({
                              title: k,
                              class: differs.includes(k) ? 'differs' : '',
                              value: (r) => (r.params || {})[k] ?? ''
                            })),
                ...metricKeys.map(
                    (k) => ({title: k, class: 'num', value: (r) => number(lastValue(r, k))})),
              ],
              runs)));
  };
  drawParams(false);

  // Parallel coordinates over the numeric params that differ and every metric.
  const dims = [
    ...differs.filter((k) => runs.every((r) => !isNaN(Number((r.params || {})[k] ?? NaN))))
        .map((k) => ({name: k, value: (r) => Number((r.params || {})[k])})),
    ...metricKeys.map((k) => ({name: k, value: (r) => lastValue(r, k)})),
  ];

  // One chart per metric, each curve a run; drawn when scrolled into view.
  const curves = runs.map((r) => ({runId: r.id, label: label(r)}));
  const charts = metricKeys.map((k) => new MetricChart(k, curves));
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      observer.unobserve(entry.target);
      const chart = charts.find((c) => c.element === entry.target);
      if (chart) chart.load().catch((e) => console.warn(e));
    }
  });
  main.replaceChildren(
      h('h2', {}, `Compare ${runs.length} runs`,
        h('span', {class: 'muted'},
          ` from ${new Set(runs.map((r) => r.experimentId)).size}` +
              ' experiment(s)')),
      section('Metrics', h('div', {class: 'charts'}, charts.map((c) => c.element))),
      section('Params and final metrics', paramsBox),
      section(
          'Parallel coordinates',
          dims.length >= 2 ? h('div', {class: 'scroll-x'}, parallel(runs, dims)) :
                             h('p', {class: 'muted'}, 'Fewer than two numeric dimensions.')));
  for (const c of charts) observer.observe(c.element);
  return {
    dispose: () => {
      observer.disconnect();
      charts.forEach((c) => c.destroy());
    },
  };
}
