// The model registry: every model; one model's versions, its aliases, each alias's history as a
// timeline, and what an alias pointed to at a given date ("what was in production on date D").
import {all, call, project} from '../api.js';
import {error, h, link, section, state, table, time} from '../ui.js';

async function list(main, context) {
  async function load() {
    const models = await all(
        'metadata', 'ListRegisteredModels', {pageSize: 1000, project: project()}, 'models', 100000,
        {signal: context.signal});
    main.replaceChildren(section(
        'Models',
        table(
            [
              {title: 'Name', value: (m) => link({view: 'models', name: m.name}, m.name)},
              {title: 'Latest version', class: 'num', value: (m) => m.latestVersion || ''},
              {
                title: 'Aliases',
                value: (m) => Object.entries(m.aliases || {})
                                  .map(([a, v]) => h('span', {class: 'tag'}, `${a} → v${v}`))
              },
              {title: 'Updated', value: (m) => time(m.updateTimeMs)},
              {title: 'Description', value: (m) => m.description || ''},
            ],
            models, {
              empty: 'No models registered yet: `mlops models register`.',
              open: (m) => context.go({view: 'models', name: m.name})
            })));
  }
  await load();
  return {refresh: load};
}

// One lane per alias: a bar per period the alias pointed at a version.
function timeline(histories, now) {
  const lanes = Object.entries(histories);
  const start = Math.min(now, ...lanes.flatMap(([, moves]) => moves.map((m) => Number(m.timeMs))));
  const width = 900, lane = 34, left = 110;
  const x = d3.time.scale().domain([new Date(start), new Date(now)]).range([left, width - 20]);
  const svg = d3.select(document.createElementNS('http://www.w3.org/2000/svg', 'svg'))
                  .attr('class', 'timeline')
                  .attr('viewBox', `0 0 ${width} ${lanes.length * lane + 30}`)
                  .attr('width', '100%');
  lanes.forEach(([alias, moves], i) => {
    const g = svg.append('g').attr('transform', `translate(0,${i * lane})`);
    g.append('text').attr('x', 4).attr('y', 20).text(alias);
    moves.forEach((m, j) => {
      if (!Number(m.toVersion)) return;  // deleted: no bar until the next move
      const from = Number(m.timeMs), to = j + 1 < moves.length ? Number(moves[j + 1].timeMs) : now;
      const bar = g.append('g').attr('class', 'period');
      bar.append('rect')
          .attr('x', x(new Date(from)))
          .attr('y', 4)
          .attr('width', Math.max(2, x(new Date(to)) - x(new Date(from))))
          .attr('height', 22);
      bar.append('text').attr('x', x(new Date(from)) + 4).attr('y', 20).text('v' + m.toVersion);
      bar.append('title').text(
          `v${m.toVersion} from ${time(from)}` + (m.actor ? ` by ${m.actor}` : '') +
          (m.reason ? `: ${m.reason}` : ''));
    });
  });
  svg.append('g')
      .attr('class', 'axis')
      .attr('transform', `translate(0,${lanes.length * lane + 4})`)
      .call(d3.svg.axis().scale(x).orient('bottom').ticks(6));
  return svg.node();
}

export async function render(main, params, context) {
  if (!params.name) return list(main, context);
  const name = params.name;
  const model = await call('metadata', 'GetRegisteredModel', {name}, {signal: context.signal});
  const versions = await all(
      'metadata', 'ListModelVersions', {name, pageSize: 1000}, 'versions', 10000,
      {signal: context.signal});
  const aliases = Object.keys(model.aliases || {}).sort();
  const histories = {};
  for (const alias of aliases) {
    histories[alias] =
        (await all('metadata', 'GetAliasHistory', {name, alias, pageSize: 1000}, 'moves', 10000, {
          signal: context.signal
        })).sort((a, b) => Number(a.sequence) - Number(b.sequence));
  }
  // Evaluations and blessings (docs/analysis.md); none shown where there is no monitoring.
  let evaluations = [];
  try {
    evaluations = (await call('monitoring', 'ListEvaluations', {model: name, pageSize: 50}, {
                    signal: context.signal
                  })).evaluations ||
        [];
  } catch (e) {
    if (e.name === 'AbortError') throw e;
  }
  const gated = Object.keys(model.aliasPolicies || {})
                    .filter((a) => model.aliasPolicies[a].requireBlessing)
                    .sort();
  const answer = h('div', {'aria-live': 'polite'});
  const dateInput =
      h('input', {type: 'datetime-local', step: 1, 'aria-label': 'date', value: params.at || ''});
  const aliasSelect =
      h('select', {'aria-label': 'alias'},
        aliases.map(
            (a) => h('option', {value: a, selected: a === (params.alias || 'production')}, a)));
  async function at() {
    if (!dateInput.value) return;
    const ms = new Date(dateInput.value).getTime();
    context.go(
        {view: 'models', name, alias: aliasSelect.value, at: dateInput.value}, {replace: true});
    try {
      const response = await call(
          'metadata', 'GetAliasHistory', {name, alias: aliasSelect.value, atTimeMs: String(ms)});
      const move = (response.moves || [])[0];
      answer.replaceChildren(
          move && Number(move.toVersion) ?
              h('p', {class: 'at-answer'}, `On ${time(ms)}, ${name}@${aliasSelect.value} was `,
                h('b', {}, 'version ' + move.toVersion), ` (since ${time(move.timeMs)}).`) :
              h('p', {class: 'at-answer'},
                `On ${time(ms)}, ${name}@${aliasSelect.value} pointed at no version.`));
    } catch (e) {
      // NOT_FOUND: the alias did not exist yet (or had been deleted) at that time.
      answer.replaceChildren(
          e.code === 'NOT_FOUND' ?
              h('p', {class: 'at-answer'},
                `On ${time(ms)}, ${name}@${aliasSelect.value} pointed at no version.`) :
              error(e));
    }
  }
  // replaceChildren writes a null child as the text "null": an absent part is ''.
  main.replaceChildren(
      h('h2', {}, 'Model ', name), h('p', {class: 'muted'}, model.description || ''),
      section(
          'Versions',
          table(
              [
                {title: 'Version', class: 'num', value: (v) => 'v' + v.version},
                {
                  title: 'Aliases',
                  value: (v) => (v.aliases || []).map((a) => h('span', {class: 'tag'}, a))
                },
                {title: 'Status', value: (v) => state(v.status || 'READY')},
                {
                  title: 'Blessing',
                  value: (v) => v.blessing ?
                      h('span', {
                        class: 'tag blessing',
                        title: [...(v.blessing.failed || []), ...(v.blessing.passed || [])].join(
                            '\n')
                      },
                        v.blessing.blessed ? 'blessed' : 'not blessed') :
                      ''
                },
                {
                  title: 'Run',
                  value: (v) => v.sourceRunId ?
                      link({view: 'run', id: v.sourceRunId}, v.sourceRunId.slice(-8)) :
                      ''
                },
                {
                  title: 'Digest',
                  value: (v) =>
                      h('code', {title: v.artifactDigest}, (v.artifactDigest || '').slice(0, 12))
                },
                {
                  title: 'Lineage',
                  value: (v) => link({view: 'lineage', model: `${name}@${v.version}`}, 'lineage')
                },
                {title: 'Created', value: (v) => time(v.createTimeMs)},
              ],
              versions.sort((a, b) => Number(b.version) - Number(a.version)))),
      gated.length ? h('p', {class: 'gates'}, gated.join(', '),
                       gated.length > 1 ? ' move' : ' moves',
                       ' only to blessed versions (or by a recorded override).') :
                     '',
      evaluations.length ?
          section(
              'Evaluations',
              table(
                  [
                    {title: 'Time', value: (e) => time(e.timeMs)},
                    {title: 'Version', class: 'num', value: (e) => 'v' + e.modelVersion},
                    {
                      title: 'Dataset',
                      value: (e) => h('code', {title: e.dataset}, (e.dataset || '').slice(0, 24))
                    },
                    {title: 'Rows', class: 'num', value: (e) => (e.overall || {}).count || '0'},
                    {
                      title: 'Headline',
                      value: (e) => e.task === 'regression' ?
                          'rmse ' + Number((e.overall || {}).rmse || 0).toFixed(4) :
                          'accuracy ' + Number((e.overall || {}).accuracy || 0).toFixed(4)
                    },
                    {
                      title: 'Verdict',
                      value: (e) => e.verdict && (e.verdict.policy || []).length ?
                          h('span', {
                            class: 'tag verdict',
                            title: [...(e.verdict.failed || []), ...(e.verdict.passed || [])]
                                       .join('\n')
                          },
                            e.verdict.blessed ? 'blessed' : 'not blessed') :
                          ''
                    },
                  ],
                  evaluations)) :
          '',
      section(
          'Aliases over time',
          aliases.length ? timeline(histories, Date.now()) :
                           h('p', {class: 'muted'}, 'No aliases.')),
      aliases.length ?
          section(
              'What an alias pointed at',
              h('p', {}, aliasSelect, ' on ', dateInput, ' ', h('button', {onclick: at}, 'Show')),
              answer) :
          '');
  if (params.at) await at();
  return null;
}
