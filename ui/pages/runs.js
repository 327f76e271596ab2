// The runs of one or more experiments: a table that renders only the rows in view, the search
// filter (a bad filter is shown at the position the server names), sorting by any column (on the
// server where it indexes the column, otherwise over the loaded runs), a choice of param, tag and
// metric columns (each metric's last value, and its min and max), and selection for comparison.
import {ApiError, call} from '../api.js';
import {duration, error, h, href, number, time, VirtualTable} from '../ui.js';

const FIRST_PAGE = 200;  // painted at once; the rest follows in the background
const PAGE = 5000;
export const MAX_COMPARE = 500;

function quoted(key) {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? key : '`' + key.replace(/`/g, '') + '`';
}

function metricOf(run, key) {
  return (run.latestMetrics || []).find((m) => m.key === key);
}
function summaryOf(run, key) {
  return (run.metricSummaries || []).find((m) => m.key === key);
}

// Column ids: "a:<attribute>", "p:<param>", "t:<tag>", "m:<metric>" (last value), "min:<metric>",
// "max:<metric>".
function column(id) {
  const colon = id.indexOf(':');
  const kind = id.slice(0, colon), key = id.slice(colon + 1);
  const attributes = {
    name: {title: 'Name', value: (r) => r.name || '', order: 'name', width: 'minmax(10em, 2fr)'},
    status: {title: 'Status', value: (r) => r.status || '', order: 'status', width: '7em'},
    start_time: {
      title: 'Started',
      value: (r) => time(r.startTimeMs),
      order: 'start_time',
      sortValue: (r) => Number(r.startTimeMs || 0),
      width: '12.5em'
    },
    duration: {
      title: 'Duration',
      value: (r) => duration(r.startTimeMs, r.endTimeMs),
      sortValue: (r) => Number(r.endTimeMs || Date.now()) - Number(r.startTimeMs || 0),
      width: '7em'
    },
    experiment: {title: 'Experiment', value: (r) => r.experimentId, order: 'experiment_id'},
    id: {title: 'Run id', value: (r) => r.id, order: 'run_id', width: '18em'},
  };
  if (kind === 'a') return {id, key: id, ...attributes[key]};
  if (kind === 'p') {
    return {
      id,
      key: id,
      title: key,
      value: (r) => (r.params || {})[key] ?? '',
      order: 'params.' + quoted(key)
    };
  }
  if (kind === 't') {
    return {
      id,
      key: id,
      title: 'tag ' + key,
      value: (r) => (r.tags || {})[key] ?? '',
      order: 'tags.' + quoted(key)
    };
  }
  if (kind === 'm') {
    return {
      id,
      key: id,
      title: key,
      numeric: true,
      value: (r) => number(metricOf(r, key)?.value),
      order: 'metrics.' + quoted(key),
      sortValue: (r) => Number(metricOf(r, key)?.value ?? NaN)
    };
  }
  // min and max: sorted over the loaded runs (the server indexes each metric's last value)
  const pick = (r) => summaryOf(r, key)?.[kind];
  return {
    id,
    key: id,
    title: `${key} (${kind})`,
    numeric: true,
    value: (r) => number(pick(r)),
    sortValue: (r) => Number(pick(r) ?? NaN)
  };
}

export async function render(main, params, context) {
  const experiments = (params.experiments || '').split(',').filter(Boolean);
  if (!experiments.length) {
    main.replaceChildren(
        h('p', {}, 'Choose experiments on the ',
          h('a', {href: '?view=experiments'}, 'experiments page'), '.'));
    return null;
  }
  let filter = params.filter || '';
  let order = params.order || '';  // "<column id> asc|desc"
  let columnIds = params.columns ? params.columns.split(',').map(decodeURIComponent) : null;
  let rows = [];
  let generation = 0;
  const known = {p: new Set(), t: new Set(), m: new Set()};

  const status = h('span', {class: 'muted', 'aria-live': 'polite'});
  const filterInput = h('input', {
    type: 'search',
    class: 'filter',
    value: filter,
    'aria-label': 'filter',
    spellcheck: 'false',
    placeholder: 'metrics.acc > 0.9 and params.opt = "adam"'
  });
  const filterError = h('div', {class: 'filter-error', hidden: true});
  const compareLink = h('a', {class: 'button', href: '#', 'aria-disabled': 'true'}, 'Compare');
  const chooser = h('div', {class: 'columns'});
  const tableView = new VirtualTable({
    label: 'runs',
    id: (r) => r.id,
    open: (r) => context.go({view: 'run', id: r.id}),
    onSort: (c) => {
      const desc = order.startsWith(c.id + ' ') && order.endsWith(' asc');
      order = `${c.id} ${desc ? 'desc' : 'asc'}`;
      save();
      if (c.order)
        load();
      else
        applyColumns();
    },
    onSelect: (selected) => {
      const ids = [...selected].slice(0, MAX_COMPARE);
      compareLink.setAttribute('href', href({view: 'compare', runs: ids.join(',')}));
      compareLink.setAttribute('aria-disabled', String(ids.length === 0));
      compareLink.textContent = `Compare ${ids.length} run${ids.length === 1 ? '' : 's'}` +
          (selected.size > MAX_COMPARE ? ` (the first ${MAX_COMPARE})` : '');
    },
  });

  function save() {
    context.go(
        {
          view: 'runs',
          experiments: experiments.join(','),
          filter,
          order,
          columns: columnIds ? columnIds.map(encodeURIComponent).join(',') : ''
        },
        {replace: true});
  }

  function columns() {
    const select = {
      id: 'select',
      key: 'select',
      title: '',
      width: '2.2em',
      sortable: false,
      value: () => '',
      cell: (r, t) => h('input', {
        type: 'checkbox',
        'aria-label': 'select ' + (r.name || r.id),
        checked: t.selected.has(r.id),
        onclick: (e) => e.stopPropagation(),
        onchange: () => t.toggle(r)
      })
    };
    const nameLink = {
      ...column('a:name'),
      cell: (r) => h('a', {href: href({view: 'run', id: r.id})}, r.name || r.id)
    };
    const ids = columnIds || [
      'a:status',
      'a:start_time',
      'a:duration',
      ...[...known.m].slice(0, 6).map((k) => 'm:' + k),
      ...[...known.p].slice(0, 6).map((k) => 'p:' + k),
    ];
    return [
      select, nameLink,
      ...ids.filter((id) => id !== 'a:name').map(column).filter((c) => c.title !== undefined)
    ];
  }

  function applyColumns() {
    const cols = columns();
    const [id, direction] = order ? order.split(' ') : ['a:start_time', 'desc'];
    const sortColumn = cols.find((c) => c.id === id) || (id ? column(id) : null);
    let sorted = rows;
    if (sortColumn && !sortColumn.order && sortColumn.sortValue) {
      // Sorted here: missing values (NaN) last, whichever the direction.
      const sign = direction === 'desc' ? -1 : 1;
      sorted = rows.slice().sort((a, b) => {
        const x = sortColumn.sortValue(a), y = sortColumn.sortValue(b);
        if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);
        return sign * (x - y);
      });
    }
    tableView.setColumns(cols, {key: id, desc: direction === 'desc'});
    tableView.setRows(sorted);
    drawChooser(cols);
  }

  function drawChooser(cols) {
    const shown = new Set(cols.map((c) => c.id));
    const box = (id, label) =>
        h('label', {}, h('input', {
            type: 'checkbox',
            checked: shown.has(id),
            onchange: (event) => {
              const current = cols.map((c) => c.id).filter((c) => c !== 'select' && c !== 'a:name');
              columnIds = event.target.checked ? [...current, id] : current.filter((c) => c !== id);
              save();
              applyColumns();
            }
          }),
          label);
    const attributes = ['status', 'start_time', 'duration', 'experiment', 'id'];
    chooser.replaceChildren(
        h('details', {}, h('summary', {}, 'Columns'),
          h('div', {class: 'choices'},
            h('fieldset', {}, h('legend', {}, 'Run'), attributes.map((a) => box('a:' + a, a))),
            h('fieldset', {}, h('legend', {}, 'Metrics (last, min, max)'),
              [...known.m].sort().map(
                  (k) =>
                      h('span', {class: 'choice'}, box('m:' + k, k), box('min:' + k, 'min'),
                        box('max:' + k, 'max')))),
            h('fieldset', {}, h('legend', {}, 'Params'),
              [...known.p].sort().map((k) => box('p:' + k, k))),
            h('fieldset', {}, h('legend', {}, 'Tags'),
              [...known.t].sort().map((k) => box('t:' + k, k))))));
  }

  function learn(batch) {
    for (const r of batch) {
      for (const k in r.params || {}) known.p.add(k);
      for (const k in r.tags || {}) known.t.add(k);
      for (const m of r.latestMetrics || []) known.m.add(m.key);
    }
  }

  function showFilterError(e) {
    const match = /at position (\d+)/.exec(e.message);
    filterError.hidden = false;
    if (!match) {
      filterError.replaceChildren(error(e));
      return;
    }
    const position = Number(match[1]);  // 1-based, in characters
    const chars = [...filter];
    filterError.replaceChildren(
        h('pre', {class: 'filter-caret', 'data-position': position}, chars.join(''), '\n',
          ' '.repeat(Math.max(0, position - 1)), '^'),
        error(e));
    // Put the cursor where the server found the error (selection offsets count UTF-16 units).
    const offset = chars.slice(0, position - 1).join('').length;
    filterInput.focus();
    filterInput.setSelectionRange(offset, offset + 1);
  }

  async function load() {
    const mine = ++generation;
    const [id, direction] = order ? order.split(' ') : ['', ''];
    const sortColumn = id ? column(id) : null;
    const request = {experimentIds: experiments, filter};
    if (sortColumn && sortColumn.order) {
      request.orderBy = [sortColumn.order + (direction === 'desc' ? ' DESC' : ' ASC')];
    }
    const started = performance.now();
    status.textContent = 'loading…';
    tableView.element.dataset.loaded = 'false';
    filterError.hidden = true;
    let pageToken = '';
    let loaded = [];
    let first = true;
    try {
      do {
        const response = await call(
            'metadata', 'SearchRuns', {...request, pageSize: first ? FIRST_PAGE : PAGE, pageToken},
            {signal: context.signal});
        if (mine !== generation) return;
        const batch = response.runs || [];
        learn(batch);
        loaded = loaded.concat(batch);
        rows = loaded;
        pageToken = response.nextPageToken || '';
        applyColumns();
        if (first) {
          // The first page is on screen once the next frame is painted: what
          // ui_runs_table_first_paint_ms measures.
          requestAnimationFrame(() => setTimeout(() => performance.mark('mlops-runs-first-paint')));
          first = false;
        }
        status.textContent = `${loaded.length} runs` +
            (pageToken ? ' loaded, loading more…' :
                         ` · ${Math.round(performance.now() - started)} ms`);
      } while (pageToken);
      tableView.element.dataset.loaded = 'true';
      performance.mark('mlops-runs-loaded');
    } catch (e) {
      if (mine !== generation || context.signal.aborted) return;
      status.textContent = '';
      if (e instanceof ApiError && e.code === 'INVALID_ARGUMENT' && filter)
        showFilterError(e);
      else
        throw e;
    }
  }

  const form =
      h('form', {
        class: 'filter-form',
        onsubmit: (event) => {
          event.preventDefault();
          filter = filterInput.value.trim();
          save();
          load();
        }
      },
        filterInput, h('button', {}, 'Search'));
  main.replaceChildren(
      h('section', {class: 'runs-page'},
        h('h2', {}, 'Runs ',
          h('span', {class: 'muted'},
            experiments.length === 1 ? '' : `of ${experiments.length} experiments`)),
        form, filterError, h('div', {class: 'toolbar'}, compareLink, chooser, status),
        tableView.element));
  await load();
  // Auto-refresh: a short list is searched again (new runs appear); in a long one the RUNNING
  // runs in view are fetched again, in place.
  async function refresh() {
    if (tableView.element.dataset.loaded !== 'true') return;
    if (rows.length <= PAGE) {
      await load();
      return;
    }
    const mine = generation;
    const inView =
        tableView.rows.slice(tableView.first, tableView.last).filter((r) => r.status === 'RUNNING');
    const fresh = await Promise.all(inView.map((r) => call('metadata', 'GetRun', {runId: r.id})));
    if (mine !== generation) return;
    const byId = new Map(fresh.map((r) => [r.id, r]));
    const replace = (list) => list.forEach((r, i) => {
      if (byId.has(r.id)) list[i] = byId.get(r.id);
    });
    replace(rows);
    replace(tableView.rows);
    tableView.render(true);
  }
  return {refresh, dispose: () => ++generation};
}
