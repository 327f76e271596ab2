// One run: what produced it (code, command, environment, data), its params and tags, a chart per
// metric (live while the run is RUNNING), its artifacts and inputs with their digests, and the
// verdict of `mlops reproduce`.
import {call} from '../api.js';
import {MetricChart} from '../charts.js';
import {duration, h, link, mapTable, section, state, table, time} from '../ui.js';

function verdict(run) {
  const tags = run.tags || {};
  if (tags['mlops.reproduced']) {
    return h(
        'p', {class: 'verdict', 'data-verdict': tags['mlops.reproduced']},
        'Reproduced: ', h('b', {}, tags['mlops.reproduced']), ' by run ',
        link({view: 'run', id: tags['mlops.reproduced_by']}, tags['mlops.reproduced_by']));
  }
  if (tags['mlops.reproduction_of']) {
    return h(
        'p', {class: 'verdict', 'data-verdict': tags['mlops.verdict'] || ''},
        'A reproduction of run ',
        link({view: 'run', id: tags['mlops.reproduction_of']}, tags['mlops.reproduction_of']), ': ',
        h('b', {}, tags['mlops.verdict'] || 'no verdict'));
  }
  return h(
      'p', {class: 'muted'}, 'Not reproduced yet: ', h('code', {}, `mlops reproduce ${run.id}`));
}

function source(run) {
  const s = run.source || {};
  const code = s.code || {};
  const rows = [
    ['Repository', code.repository],
    ['Commit', code.commit && h('code', {}, code.commit)],
    ['Branch', code.branch],
    [
      'Uncommitted changes',
      code.dirty ? h('span', {}, 'yes, patch ', h('code', {}, code.diffDigest || '')) :
                   (code.commit ? 'none' : '')
    ],
    ['Command', (s.command || []).length ? h('code', {}, s.command.join(' ')) : ''],
    ['Working directory', s.workingDir],
    ['Image', s.imageDigest && h('code', {}, s.imageDigest)],
  ].filter(([, v]) => v);
  return h(
      'div', {},
      rows.length ?
          h('table', {class: 'kv'},
            h('tbody', {}, rows.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v))))) :
          h('p', {class: 'muted'}, 'No source recorded.'),
      h('details', {}, h('summary', {}, `Environment (${Object.keys(s.environment || {}).length})`),
        mapTable(s.environment)),
      h('details', {},
        h('summary', {}, `Dependencies (${Object.keys(s.dependencyDigests || {}).length})`),
        mapTable(s.dependencyDigests)));
}

function artifacts(run, graph) {
  const inputs = (run.source?.inputs || []).map((i) => ({
                                                  role: 'input dataset',
                                                  name: i.name,
                                                  digest: i.digest,
                                                  target: {view: 'datasets', name: i.name}
                                                }));
  const tags = run.tags || {};
  for (const [k, v] of Object.entries(tags)) {
    if (k.startsWith('mlops.output.')) {
      inputs.push({role: 'output', name: k.slice(13), digest: v});
    }
  }
  const byId = new Map();
  for (const node of graph?.nodes || [])
    if (node.artifact) byId.set(node.artifact.id, node.artifact);
  for (const edge of graph?.edges || []) {
    const a = byId.get(edge.artifactId);
    if (!a) continue;
    inputs.push({
      role: edge.type === 'OUTPUT' ? 'output' : 'input',
      name: `${a.type} ${a.name}`,
      digest: a.digest,
      target: {view: 'lineage', artifact: a.id}
    });
  }
  return table(
      [
        {title: 'Role', value: (a) => a.role},
        {title: 'Name', value: (a) => a.target ? link(a.target, a.name) : a.name},
        {title: 'Digest', value: (a) => h('code', {}, a.digest || '')},
      ],
      inputs, {empty: 'No inputs or outputs recorded.'});
}

export async function render(main, params, context) {
  let run = await call('metadata', 'GetRun', {runId: params.id}, {signal: context.signal});
  let graph = null;
  try {
    graph = await call(
        'metadata', 'GetLineage', {runId: run.id, direction: 'BOTH', maxHops: 1},
        {signal: context.signal});
  } catch (e) { /* no lineage for this run */
  }
  const charts =
      (run.latestMetrics || []).map((m) => m.key).sort().map((key) => new MetricChart(key, [
                                                               {runId: run.id, label: run.name}
                                                             ]));
  const header = h('div', {});
  const drawHeader = () => header.replaceChildren(
      h('h2', {}, run.name || run.id, ' ', state(run.status)),
      h('p', {class: 'muted'}, 'Run ', h('code', {}, run.id), ' of experiment ',
        link({view: 'runs', experiments: run.experimentId}, run.experimentId), ' · started ',
        time(run.startTimeMs), ' · ', duration(run.startTimeMs, run.endTimeMs), ' · ',
        link({view: 'lineage', run: run.id}, 'lineage'), ' · ',
        link({view: 'compare', runs: run.id}, 'compare')));
  drawHeader();
  main.replaceChildren(
      header, verdict(run),
      section(
          'Metrics',
          charts.length ? h('div', {class: 'charts'}, charts.map((c) => c.element)) :
                          h('p', {class: 'muted'}, 'No metrics logged.')),
      h('div', {class: 'columns2'}, section('Params', mapTable(run.params)),
        section('Tags', mapTable(run.tags))),
      section('Source', source(run)), section('Artifacts and inputs', artifacts(run, graph)));
  await Promise.all(charts.map((c) => c.load()));
  return {
    // Live while RUNNING: the run and every curve (at the current zoom) again.
    refresh: async () => {
      if (run.status !== 'RUNNING') return;
      run = await call('metadata', 'GetRun', {runId: run.id});
      drawHeader();
      await Promise.all(charts.map((c) => c.load()));
    },
    dispose: () => charts.forEach((c) => c.destroy()),
  };
}
