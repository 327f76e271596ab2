// The lineage graph of any node: a dataset version, a model version, a run, an artifact or an
// execution; upstream, downstream or both, to a chosen depth. Drawn in layers (producers left of
// what they produced) with d3 (Debian's libjs-d3, 3.5): pan and zoom with the mouse, click a node
// to walk to it. A node with many neighbours of one type shows them as one group until opened, so
// thousands of nodes stay readable.
import {call, project} from '../api.js';
import {error, h, link, section, time} from '../ui.js';

const GROUP_OVER = 8;  // siblings of one type beyond this many are drawn as one group
const SVG = 'http://www.w3.org/2000/svg';

async function start(params, signal) {
  if (params.artifact) return {artifactId: params.artifact};
  if (params.execution) return {executionId: params.execution};
  if (params.run) return {runId: params.run};
  if (params.model) {
    const [name, ref] = params.model.split('@');
    const version = await call(
        'metadata', 'GetModelVersion',
        ref && /^\d+$/.test(ref) ? {name, version: ref} : {name, alias: ref || ''}, {signal});
    if (Number(version.artifactId || 0) > 0) return {artifactId: version.artifactId};
    return start({digest: version.artifactDigest}, signal);
  }
  if (params.digest) {
    const found = await call(
        'metadata', 'ListArtifacts',
        {filter: `digest = '${params.digest}'`, pageSize: 1, project: project()}, {signal});
    if (!(found.artifacts || []).length) {
      throw Object.assign(
          new Error(`no lineage node has digest ${params.digest}`), {code: 'NOT_FOUND'});
    }
    return {artifactId: found.artifacts[0].id};
  }
  return null;
}

function nodeId(n) {
  return n.artifact ? 'a' + n.artifact.id : 'e' + n.execution.id;
}
function nodeLabel(n) {
  const x = n.artifact || n.execution;
  return `${x.type}${x.name ? ' ' + x.name : ''}`;
}

// Layers: the longest path from a node with no producer; then groups of siblings.
function layout(graph, expanded) {
  const nodes =
      new Map(graph.nodes.map((n) => [nodeId(n), {node: n, id: nodeId(n), in : [], out: []}]));
  const edges = [];
  for (const e of graph.edges) {
    const a = 'a' + e.artifactId, x = 'e' + e.executionId;
    const [from, to] = e.type === 'OUTPUT' ? [x, a] : [a, x];
    if (!nodes.has(from) || !nodes.has(to)) continue;
    nodes.get(from).out.push(to);
    nodes.get(to).in.push(from);
    edges.push([from, to]);
  }
  const layer = new Map();
  const depth = (id, seen = new Set()) => {
    if (layer.has(id)) return layer.get(id);
    if (seen.has(id)) return 0;  // a cycle cannot happen in lineage; be safe anyway
    seen.add(id);
    const d = Math.max(-1, ...nodes.get(id).in.map((p) => depth(p, seen))) + 1;
    layer.set(id, d);
    return d;
  };
  for (const id of nodes.keys()) depth(id);
  // Groups: the nodes of one layer with the same type and the same single neighbour.
  const groupOf = new Map();
  const buckets = new Map();
  for (const [id, v] of nodes) {
    const x = v.node.artifact || v.node.execution;
    const neighbour = v.in.length === 1    ? 'in:' + v.in[0] :
        v.out.length === 1 && !v.in.length ? 'out:' + v.out[0] :
                                             null;
    if (!neighbour) continue;
    const key = `${layer.get(id)}|${x.type}|${neighbour}`;
    if (!buckets.has(key)) buckets.set(key, []);
    buckets.get(key).push(id);
  }
  for (const [key, ids] of buckets) {
    if (ids.length <= GROUP_OVER || expanded.has(key)) continue;
    for (const id of ids) groupOf.set(id, key);
  }
  const shown = new Map();  // id -> {id, label, layer, group?, node?}
  for (const [id, v] of nodes) {
    const g = groupOf.get(id);
    if (g) {
      if (!shown.has(g)) {
        shown.set(g, {
          id: g,
          group: true,
          count: 0,
          layer: layer.get(id),
          kind: v.node.artifact ? 'artifact' : 'execution',
          type: (v.node.artifact || v.node.execution).type
        });
      }
      shown.get(g).count++;
    } else {
      shown.set(id, {
        id,
        node: v.node,
        layer: layer.get(id),
        label: nodeLabel(v.node),
        kind: v.node.artifact ? 'artifact' : 'execution'
      });
    }
  }
  for (const s of shown.values())
    if (s.group) s.label = `${s.count} × ${s.type} (open)`;
  const links = new Map();
  for (const [from, to] of edges) {
    const a = groupOf.get(from) || from, b = groupOf.get(to) || to;
    links.set(a + '>' + b, [a, b]);
  }
  const columns = new Map();
  for (const s of shown.values()) {
    if (!columns.has(s.layer)) columns.set(s.layer, []);
    columns.get(s.layer).push(s);
  }
  for (const column of columns.values()) {
    column.sort((a, b) => a.kind.localeCompare(b.kind) || a.label.localeCompare(b.label));
    column.forEach((s, i) => {
      s.x = 40 + s.layer * 240;
      s.y = 30 + i * 46;
    });
  }
  return {
    shown,
    links: [...links.values()],
    height: 60 + 46 * Math.max(1, ...[...columns.values()].map((c) => c.length))
  };
}

function draw(graph, origin, expanded, onOpen, onGroup, fitWidth) {
  const {shown, links, height} = layout(graph, expanded);
  const width = 80 + 240 * (Math.max(0, ...[...shown.values()].map((s) => s.layer)) + 1);
  // A graph wider than its box starts zoomed out to fit (at most to a quarter).
  const scale = fitWidth ? Math.max(0.25, Math.min(1, (fitWidth - 10) / width)) : 1;
  const svg = d3.select(document.createElementNS(SVG, 'svg'))
                  .attr('class', 'lineage-graph')
                  .attr('width', '100%')
                  .attr('height', Math.min(700, Math.max(240, height * scale)));
  const root = svg.append('g').attr('transform', `scale(${scale})`);
  svg.call(d3.behavior.zoom().scale(scale).scaleExtent([0.1, 4]).on('zoom', () => {
    root.attr('transform', `translate(${d3.event.translate}) scale(${d3.event.scale})`);
  }));
  root.append('defs')
      .append('marker')
      .attr('id', 'arrow')
      .attr('viewBox', '0 0 10 10')
      .attr('refX', 10)
      .attr('refY', 5)
      .attr('markerWidth', 6)
      .attr('markerHeight', 6)
      .attr('orient', 'auto')
      .append('path')
      .attr('d', 'M0,0L10,5L0,10z');
  root.selectAll('path.edge')
      .data(links)
      .enter()
      .append('path')
      .attr('class', 'edge')
      .attr('marker-end', 'url(#arrow)')
      .attr('d', ([a, b]) => {
        const s = shown.get(a), t = shown.get(b);
        const x1 = s.x + 180, y1 = s.y + 16, x2 = t.x, y2 = t.y + 16, mx = (x1 + x2) / 2;
        return `M${x1},${y1}C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
      });
  const node = root.selectAll('g.node')
                   .data([...shown.values()])
                   .enter()
                   .append('g')
                   .attr(
                       'class',
                       (s) => `node ${s.kind}${s.group ? ' group' : ''}` +
                           (s.id === origin ? ' origin' : ''))
                   .attr('data-id', (s) => s.id)
                   .attr('transform', (s) => `translate(${s.x},${s.y})`)
                   .attr('tabindex', 0)
                   .on('click', (s) => (s.group ? onGroup(s.id) : onOpen(s)))
                   .on('keydown', (s) => {
                     if (d3.event.key === 'Enter') s.group ? onGroup(s.id) : onOpen(s);
                   });
  node.append('rect')
      .attr('width', 180)
      .attr('height', 32)
      .attr('rx', (s) => s.kind === 'execution' ? 16 : 3);
  node.append('text').attr('x', 8).attr('y', 20).text(
      (s) => s.label.length > 26 ? s.label.slice(0, 25) + '…' : s.label);
  node.append('title').text((s) => s.label);
  svg.attr('data-nodes', graph.nodes.length);
  return svg.node();
}

function details(n) {
  if (!n) return h('p', {class: 'muted'}, 'Click a node to walk to it.');
  const x = n.artifact || n.execution;
  const rows = [
    ['Kind', n.artifact ? 'artifact' : 'execution'], ['Id', x.id], ['Type', x.type],
    ['Name', x.name], ['State', x.state], ['Digest', x.digest && h('code', {}, x.digest)],
    ['URI', x.uri], ['Run', x.runId && link({view: 'run', id: x.runId}, x.runId)],
    ['Created', time(x.createTimeMs)]
  ];
  for (const [k, v] of Object.entries(x.properties || {})) rows.push([k, JSON.stringify(v)]);
  return h(
      'table', {class: 'kv'},
      h('tbody', {},
        rows.filter(([, v]) => v).map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v)))));
}

async function picker(main, context) {
  const artifacts = await call(
      'metadata', 'ListArtifacts', {pageSize: 100, project: project()}, {signal: context.signal});
  main.replaceChildren(section(
      'Lineage',
      h('p', {},
        'Start from an artifact (or from a run, a ' +
            'dataset version or a model version on their pages):'),
      h('ul', {class: 'plain'},
        (artifacts.artifacts || [])
            .map(
                (a) => h(
                    'li', {}, link({view: 'lineage', artifact: a.id}, `${a.type} ${a.name || ''}`),
                    ' ', h('code', {class: 'muted'}, (a.digest || '').slice(0, 12)))))));
}

export async function render(main, params, context) {
  const from = await start(params, context.signal);
  if (!from) return picker(main, context);
  const depth = Number(params.depth || 3);
  const direction = params.direction || 'BOTH';
  const graph = await call(
      'metadata', 'GetLineage', {...from, direction, maxHops: depth, pageSize: 10000},
      {signal: context.signal});
  graph.nodes = graph.nodes || [];
  graph.edges = graph.edges || [];
  const origin = from.artifactId ? 'a' + from.artifactId :
      from.executionId           ? 'e' + from.executionId :
                                   null;
  const expanded = new Set();
  const view = h('div', {class: 'graph-box'});
  const side = h('aside', {class: 'node-details'});
  const redraw = () => view.replaceChildren(draw(
      graph, origin, expanded,
      (s) => {
        side.replaceChildren(details(s.node));
        const target =
            s.node.artifact ? {artifact: s.node.artifact.id} : {execution: s.node.execution.id};
        context.go({view: 'lineage', ...target, depth, direction});
      },
      (group) => {
        expanded.add(group);
        redraw();
      },
      view.clientWidth));
  const state = {view: 'lineage', ...params};
  const depthInput = h('input', {
    type: 'number',
    min: 1,
    max: 100,
    value: depth,
    'aria-label': 'depth',
    onchange: (e) => context.go({...state, depth: e.target.value})
  });
  const directionSelect =
      h('select', {
        'aria-label': 'direction',
        onchange: (e) => context.go({...state, direction: e.target.value})
      },
        ['BOTH', 'UPSTREAM', 'DOWNSTREAM'].map(
            (d) => h('option', {value: d, selected: d === direction}, d.toLowerCase())));
  const originNode = graph.nodes.find((n) => nodeId(n) === origin);
  side.replaceChildren(details(originNode));
  main.replaceChildren(
      h('h2', {}, 'Lineage of ',
        originNode     ? nodeLabel(originNode) :
            from.runId ? 'run ' + from.runId :
                         'node'),
      h('p', {class: 'toolbar'}, 'depth ', depthInput, ' ', directionSelect, ' ',
        h('span', {class: 'muted'},
          `${graph.nodes.length} nodes, ${graph.edges.length} edges` +
              (graph.nextPageToken ? ` of ${graph.totalNodes}` : '') +
              ' · drag to pan, wheel to zoom')),
      graph.nodes.length ? h('div', {class: 'lineage'}, view, side) :
                           error({code: 'EMPTY', message: 'no lineage recorded for this node'}));
  redraw();
  return null;
}
