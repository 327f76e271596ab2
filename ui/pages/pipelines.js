// Pipelines: the pipeline runs; one run's DAG with each step coloured by its state, live (the
// scheduler's WatchPipelineRun stream), a step's logs following while it runs, cache hits, the
// sweeps' results with a link comparing their tracking runs, and retry and cancel.
import {all, call, project, stream} from '../api.js';
import {duration, error, h, href, link, number, section, state, table, time} from '../ui.js';

const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELED']);

async function list(main, context) {
  async function load() {
    const runs = await all(
        'scheduler', 'ListPipelineRuns', {pageSize: 500, project: project()}, 'runs', 500,
        {signal: context.signal});
    main.replaceChildren(section(
        'Pipeline runs',
        table(
            [
              {title: 'Run', value: (r) => link({view: 'pipelines', id: r.id}, r.id.slice(-12))},
              {title: 'Pipeline', value: (r) => r.pipeline},
              {title: 'State', value: (r) => state(r.state)},
              {title: 'Steps', value: (r) => counts(r.steps || [])},
              {title: 'Queue', value: (r) => r.queue || ''},
              {title: 'Created', value: (r) => time(r.createTimeMs)},
              {title: 'Duration', value: (r) => duration(r.createTimeMs, r.endTimeMs)},
            ],
            runs, {
              empty: 'No pipeline runs yet: `mlops pipeline submit`.',
              open: (r) => context.go({view: 'pipelines', id: r.id})
            })));
  }
  await load();
  return {refresh: load};
}

function counts(steps) {
  const n = {};
  for (const s of steps) n[s.state] = (n[s.state] || 0) + 1;
  return Object.entries(n).map(([k, v]) => `${v} ${k.toLowerCase()}`).join(', ');
}

// Layers by the longest chain of needs; a need naming a swept step means each of its instances.
function dag(run, selected, onSelect) {
  const steps = run.steps || [];
  const names = new Set(steps.map((s) => s.name));
  const resolve = (need) => names.has(need) ?
      [need] :
      steps.filter((s) => s.name.startsWith(need + '[')).map((s) => s.name);
  const layer = new Map();
  const depth = (s, seen = new Set()) => {
    if (layer.has(s.name)) return layer.get(s.name);
    if (seen.has(s.name)) return 0;
    seen.add(s.name);
    const parents = (s.needs || []).flatMap(resolve).map((n) => steps.find((x) => x.name === n));
    const d = Math.max(-1, ...parents.map((p) => depth(p, seen))) + 1;
    layer.set(s.name, d);
    return d;
  };
  steps.forEach((s) => depth(s));
  const rows = new Map();
  const pos = new Map();
  for (const s of steps) {
    const d = layer.get(s.name);
    const i = rows.get(d) || 0;
    rows.set(d, i + 1);
    pos.set(s.name, {x: 20 + d * 200, y: 20 + i * 56});
  }
  const height = 40 + 56 * Math.max(1, ...rows.values());
  const width = 40 + 200 * (Math.max(0, ...layer.values()) + 1);
  const svg = d3.select(document.createElementNS('http://www.w3.org/2000/svg', 'svg'))
                  .attr('class', 'dag')
                  .attr('viewBox', `0 0 ${width} ${height}`)
                  .attr('width', Math.min(width, 1400))
                  .attr('data-steps', steps.length);
  const edges = steps.flatMap((s) => (s.needs || []).flatMap(resolve).map((n) => [n, s.name]));
  svg.selectAll('path').data(edges).enter().append('path').attr('class', 'edge').attr('d', ([
                                                                                             a, b
                                                                                           ]) => {
    const s = pos.get(a), t = pos.get(b);
    const x1 = s.x + 160, y1 = s.y + 18, x2 = t.x, y2 = t.y + 18, mx = (x1 + x2) / 2;
    return `M${x1},${y1}C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
  });
  const node = svg.selectAll('g.step')
                   .data(steps)
                   .enter()
                   .append('g')
                   .attr(
                       'class',
                       (s) => `step state-${String(s.state).toLowerCase()}` +
                           (s.name === selected ? ' selected' : ''))
                   .attr('data-step', (s) => s.name)
                   .attr('data-state', (s) => s.state)
                   .attr('tabindex', 0)
                   .attr('transform', (s) => `translate(${pos.get(s.name).x},${pos.get(s.name).y})`)
                   .on('click', (s) => onSelect(s.name))
                   .on('keydown', (s) => {
                     if (d3.event.key === 'Enter') onSelect(s.name);
                   });
  node.append('rect').attr('width', 160).attr('height', 36).attr('rx', 6);
  node.append('text').attr('x', 8).attr('y', 15).text(
      (s) => s.name.length > 22 ? s.name.slice(0, 21) + '…' : s.name);
  node.append('text')
      .attr('class', 'sub')
      .attr('x', 8)
      .attr('y', 29)
      .text((s) => String(s.state).toLowerCase() + (s.state === 'CACHED' ? ' (cache hit)' : ''));
  node.append('title').text((s) => `${s.name}: ${s.state}${s.message ? ' — ' + s.message : ''}`);
  return svg.node();
}

function decode(base64) {
  const binary = atob(base64 || '');
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; ++i) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export async function render(main, params, context) {
  if (!params.id) return list(main, context);
  let run = await call('scheduler', 'GetPipelineRun', {id: params.id}, {signal: context.signal});
  let selected = params.step || '';
  const graph = h('div', {class: 'dag-box'});
  const header = h('div', {});
  const steps = h('div', {});
  const sweeps = h('div', {});
  const logs = h('div', {});
  let logsController = null;

  const draw = () => {
    header.replaceChildren(
        h('h2', {}, 'Pipeline run ', h('code', {}, run.id.slice(-12)), ' ', state(run.state)),
        h('p', {class: 'muted'}, `${run.pipeline} · queue ${run.queue || 'default'} · created `,
          time(run.createTimeMs), ' · ', duration(run.createTimeMs, run.endTimeMs),
          run.retryOf ? h('span', {}, ' · retry of ',
                          link({view: 'pipelines', id: run.retryOf}, run.retryOf.slice(-12))) :
                        ''),
        h('p', {class: 'toolbar'},
          h('button', {
            disabled: TERMINAL.has(run.state),
            onclick: async () => {
              run = await call('scheduler', 'CancelPipelineRun', {id: run.id});
              draw();
            }
          },
            'Cancel'),
          h('button', {
            disabled: !TERMINAL.has(run.state) || run.state === 'SUCCEEDED',
            onclick: async () => {
              const retry = await call('scheduler', 'RetryPipelineRun', {id: run.id});
              context.go({view: 'pipelines', id: retry.id});
            }
          },
            'Retry')));
    graph.replaceChildren(dag(run, selected, select));
    steps.replaceChildren(
        table(
            [
              {
                title: 'Step',
                value: (s) =>
                    h('a', {
                      href: href({view: 'pipelines', id: run.id, step: s.name}),
                      onclick: (e) => {
                        e.preventDefault();
                        select(s.name);
                      }
                    },
                      s.name)
              },
              {title: 'State', value: (s) => state(s.state)},
              {
                title: 'Cache',
                value: (s) => s.state === 'CACHED' && s.cachedFrom ? 'hit: ' + s.cachedFrom : ''
              },
              {title: 'Attempts', class: 'num', value: (s) => (s.attempts || []).length},
              {
                title: 'Run',
                value: (s) => s.trackingRunId ?
                    link({view: 'run', id: s.trackingRunId}, s.trackingRunId.slice(-8)) :
                    ''
              },
              {title: 'Duration', value: (s) => duration(s.startTimeMs, s.endTimeMs)},
              {title: 'Message', value: (s) => s.message || ''},
            ],
            run.steps || []));
    sweeps.replaceChildren(...(run.sweeps || []).map((sweep) => {
      const instances = Object.entries(sweep.values || {})
                            .sort(([, a], [, b]) => (sweep.maximize ? b - a : a - b));
      const tracking = (run.steps || [])
                           .filter((s) => s.name.startsWith(sweep.step + '[') && s.trackingRunId)
                           .map((s) => s.trackingRunId);
      return section(
          `Sweep ${sweep.step}: ${sweep.maximize ? 'max' : 'min'} ${sweep.metric}`,
          table(
              [
                {
                  title: 'Instance',
                  value: ([name]) => name === sweep.best ? h('b', {}, name + ' (best)') : name
                },
                {title: sweep.metric, class: 'num', value: ([, v]) => number(v)},
              ],
              instances),
          tracking.length ? h('p', {},
                              link(
                                  {view: 'compare', runs: tracking.join(',')},
                                  `Compare the ${tracking.length} runs`)) :
                            null);
    }));
  };

  async function showLogs(stderr) {
    if (logsController) logsController.abort();
    if (!selected) return;
    logsController = new AbortController();
    const step = (run.steps || []).find((s) => s.name === selected);
    const out = h('pre', {class: 'logs', 'aria-label': 'step logs'});
    const decoder = new TextDecoder();
    logs.replaceChildren(section(
        `Logs of ${selected}`,
        h('p', {},
          h('label', {},
            h('input',
              {type: 'checkbox', checked: stderr, onchange: (e) => showLogs(e.target.checked)}),
            ' stderr')),
        out));
    const follow =
        step && !TERMINAL.has(step.state) && step.state !== 'CACHED' && step.state !== 'SKIPPED';
    try {
      await stream(
          'scheduler', 'GetStepLogs', {runId: run.id, step: selected, stderr, follow}, (chunk) => {
            const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
            out.append(decoder.decode(decode(chunk.data), {stream: true}));
            if (atBottom) out.scrollTop = out.scrollHeight;
          }, {signal: logsController.signal});
      if (!out.textContent) out.textContent = '(no output)';
    } catch (e) {
      if (e.name !== 'AbortError') logs.append(error(e));
    }
  }

  function select(name) {
    selected = name;
    context.go({view: 'pipelines', id: run.id, step: name}, {replace: true});
    draw();
    showLogs(false);
  }

  // Live: the scheduler streams the run each time it changes, until it ends.
  const watch = new AbortController();
  const watching = TERMINAL.has(run.state) ?
      null :
      stream('scheduler', 'WatchPipelineRun', {id: run.id}, (update) => {
        run = update;
        draw();
      }, {signal: watch.signal}).catch((e) => {
        if (e.name !== 'AbortError') console.warn('watch:', e);
      });
  void watching;
  main.replaceChildren(header, section('Steps', graph, steps), sweeps, logs);
  draw();
  if (selected) showLogs(false);
  return {
    dispose: () => {
      watch.abort();
      if (logsController) logsController.abort();
    },
  };
}
