// Monitoring: the monitors and every alert (acknowledge from here); one monitor's drift per
// feature over time, the reference histogram (its profile) against the current window's, and its
// reports and alerts.
import {call, project} from '../api.js';
import {color} from '../charts.js';
import {error, h, link, number, section, table, time} from '../ui.js';

function alertsTable(alerts, onAck) {
  return table(
      [
        {title: 'Time', value: (a) => time(a.timeMs)},
        {title: 'Monitor', value: (a) => link({view: 'monitoring', monitor: a.monitor}, a.monitor)},
        {title: 'Reason', value: (a) => a.reason},
        {
          title: 'Retraining',
          value: (a) => a.pipelineRunId ?
              link({view: 'pipelines', id: a.pipelineRunId}, a.pipelineRunId.slice(-12)) :
              (a.retrain || '').replace(/^RETRAIN_/, '').toLowerCase() +
                  (a.retrainError ? ': ' + a.retrainError : '')
        },
        {
          title: 'Acknowledged',
          value: (a) => a.acknowledged ?
              `by ${a.acknowledgedBy || 'someone'}` :
              h('button', {class: 'ack', 'data-alert': a.id, onclick: () => onAck(a)},
                'Acknowledge')
        },
      ],
      alerts, {empty: 'No alerts.'});
}

async function acknowledge(a) {
  await call('monitoring', 'AcknowledgeAlert', {id: a.id, by: 'web UI'});
}

async function list(main, context) {
  async function load() {
    const [monitors, alerts] = await Promise.all([
      call('monitoring', 'ListMonitors', {project: project()}, {signal: context.signal}),
      call('monitoring', 'ListAlerts', {project: project()}, {signal: context.signal})
    ]);
    main.replaceChildren(
        section(
            'Monitors',
            table(
                [
                  {
                    title: 'Name',
                    value: (m) => link({view: 'monitoring', monitor: m.name}, m.name)
                  },
                  {
                    title: 'Model',
                    value: (m) => link(
                        {view: 'models', name: m.model},
                        `${m.model} v${m.resolvedVersion || m.modelVersion}`)
                  },
                  {title: 'Profile', value: (m) => `${m.profile} v${m.profileVersion || 'latest'}`},
                  {title: 'Features', value: (m) => (m.features || []).join(', ') || 'all'},
                  {title: 'Created', value: (m) => time(m.createTimeMs)},
                ],
                monitors.monitors || [], {
                  empty: 'No monitors: `mlops monitor create`.',
                  open: (m) => context.go({view: 'monitoring', monitor: m.name})
                })),
        section(
            'Alerts',
            alertsTable((alerts.alerts || []).sort((a, b) => b.timeMs - a.timeMs), async (a) => {
              await acknowledge(a);
              await load();
            })));
  }
  await load();
  return {refresh: load};
}

// Reference (the profile) and current (the report's window) proportions per bin or category.
function histogram(feature, profileFeature) {
  if (!profileFeature) return h('p', {class: 'muted'}, 'No reference profile for this feature.');
  const numeric = feature.kind === 'NUMERIC' || (profileFeature.binProportions || []).length;
  const reference =
      numeric ? profileFeature.binProportions || [] : profileFeature.categoryProportions || [];
  const labels = numeric ? (profileFeature.binEdges || []).map((e, i) => {
    const points = profileFeature.points || [];
    return i + 1 < (profileFeature.binEdges || []).length ? '≤ ' + number(points[e]) : 'above';
  }) :
                           [...(profileFeature.categories || []), 'other'];
  const current = feature.proportions || [];
  const canvas = h('canvas', {'aria-label': `histogram of ${feature.name}`, role: 'img'});
  const box =
      h('figure', {class: 'chart small', 'data-feature': feature.name},
        h('figcaption', {}, h('b', {}, feature.name),
          feature.drifted ? h('span', {class: 'state state-failed'}, ' drifted') : ''),
        h('div', {class: 'chart-area'}, canvas));
  new Chart(canvas, {
    type: 'bar',
    data: {
      labels: labels.slice(0, Math.max(reference.length, current.length)),
      datasets: [
        {label: 'reference', data: reference.map(Number), backgroundColor: '#9ab'},
        {label: 'current', data: current.map(Number), backgroundColor: color(1)}
      ]
    },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      plugins: {legend: {position: 'bottom'}}
    },
  });
  return box;
}

// Drift per feature over time: the first test's statistic of each feature in each report.
function driftOverTime(reports) {
  const ordered = reports.slice().sort((a, b) => Number(a.endTimeMs) - Number(b.endTimeMs));
  const features = [...new Set(ordered.flatMap((r) => (r.features || []).map((f) => f.name)))];
  const canvas = h('canvas', {'aria-label': 'drift per feature over time', role: 'img'});
  new Chart(canvas, {
    type: 'line',
    data: {
      datasets: features.map((name, i) => ({
                               label: name,
                               borderColor: color(i),
                               backgroundColor: color(i),
                               pointRadius: 2,
                               borderWidth: 1.2,
                               data: ordered
                                         .map((r) => {
                                           const f =
                                               (r.features || []).find((x) => x.name === name);
                                           const test = f && (f.tests || [])[0];
                                           return test ?
                                               {x: Number(r.endTimeMs), y: Number(test.statistic)} :
                                               null;
                                         })
                                         .filter(Boolean)
                             }))
    },
    options: {
      animation: false,
      parsing: false,
      responsive: true,
      maintainAspectRatio: false,
      scales: {x: {type: 'linear', ticks: {callback: (v) => time(v).slice(5)}}},
      plugins: {legend: {position: 'bottom'}}
    },
  });
  return h(
      'figure', {class: 'chart'},
      h('figcaption', {},
        'Drift statistic (first test) per ' +
            'feature, by window'),
      h('div', {class: 'chart-area'}, canvas));
}

export async function render(main, params, context) {
  if (!params.monitor) return list(main, context);
  const name = params.monitor;
  const monitor = await call('monitoring', 'GetMonitor', {name}, {signal: context.signal});
  async function load() {
    const [reports, alerts] = await Promise.all([
      call('monitoring', 'ListReports', {monitor: name, pageSize: 200}, {signal: context.signal}),
      call('monitoring', 'ListAlerts', {monitor: name}, {signal: context.signal})
    ]);
    const list = reports.reports || [];
    let profile = null;
    try {
      profile = await call(
          'monitoring', 'GetProfile',
          {name: monitor.profile, version: monitor.profileVersion || 0});
    } catch (e) { /* shown as missing below */
    }
    const latest = list[0];
    const byName = new Map((profile?.features || []).map((f) => [f.name, f]));
    main.replaceChildren(
        h('h2', {}, 'Monitor ', name),
        h('p', {class: 'muted'}, 'Model ',
          link({view: 'models', name: monitor.model}, monitor.model),
          ` v${monitor.resolvedVersion} · profile ${monitor.profile} · alert at drift share ` +
              `${number(monitor.driftShareThreshold || 0.5)}`),
        section(
            'Alerts',
            alertsTable(
                (alerts.alerts || []).sort((a, b) => b.timeMs - a.timeMs),
                async (a) => {
                  await acknowledge(a);
                  await load();
                })),
        list.length ? section('Drift over time', driftOverTime(list)) : null,
        latest ? section(
                     `Reference vs current (report ${time(latest.endTimeMs)}, ` +
                         `${latest.source || 'window'}, ${latest.rows} rows)`,
                     h('div', {class: 'charts'},
                       (latest.features || []).map((f) => histogram(f, byName.get(f.name))))) :
                 h('p', {class: 'muted'}, 'No reports yet.'),
        section(
            'Reports',
            table(
                [
                  {title: 'End', value: (r) => time(r.endTimeMs)},
                  {title: 'Source', value: (r) => r.source || ''},
                  {title: 'Rows', class: 'num', value: (r) => r.rows},
                  {title: 'Drift share', class: 'num', value: (r) => number(r.driftShare || 0)},
                  {title: 'Drifted', value: (r) => r.drifted ? h('b', {}, 'yes') : 'no'},
                  {
                    title: 'Drifted features',
                    value: (r) =>
                        (r.features || []).filter((f) => f.drifted).map((f) => f.name).join(', ')
                  },
                ],
                list)));
  }
  await load();
  return {refresh: load};
}
