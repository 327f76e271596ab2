// DOM helpers, formatting and the tables every page uses.

// h('a', {href: '?view=run'}, 'text', child...): an element; attributes starting with "on" are
// listeners, `class` and `style` are set as given, null children are skipped.
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on'))
      element.addEventListener(key.slice(2), value);
    else if (key === 'text')
      element.textContent = value;
    else
      element.setAttribute(key, value === true ? '' : value);
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child))
      append(element, child);
    else
      element.append(child instanceof Node ? child : String(child));
  }
}

// A link to a page of the UI: link({view: 'run', id}, text).
// A link keeps the page's project unless it names one.
export function href(state) {
  const params = new URLSearchParams();
  const project = new URLSearchParams(location.search).get('project');
  if (project && !('project' in state)) params.set('project', project);
  for (const [key, value] of Object.entries(state)) {
    if (value !== undefined && value !== null && value !== '') params.set(key, value);
  }
  return '?' + params.toString();
}
export function link(state, ...children) {
  return h('a', {href: href(state)}, ...children);
}

export function time(ms) {
  ms = Number(ms || 0);
  if (!ms) return '';
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function duration(startMs, endMs) {
  const start = Number(startMs || 0), end = Number(endMs || 0) || Date.now();
  if (!start) return '';
  let s = Math.max(0, Math.round((end - start) / 1000));
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
}

export function number(value) {
  if (value === undefined || value === null || value === '') return '';
  const n = Number(value);
  if (typeof value === 'string' && isNaN(n)) return value;  // "NaN", "Infinity" from JSON
  if (Number.isInteger(n) && Math.abs(n) < 1e15) return String(n);
  return Math.abs(n) >= 1e-3 && Math.abs(n) < 1e6 ? n.toPrecision(6).replace(/\.?0+$/, '') :
                                                    n.toExponential(4);
}

export function bytes(n) {
  n = Number(n || 0);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    ++i;
  }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
}

export function state(value) {
  const s = String(value || '').replace(/^STATE_/, '');
  return h('span', {class: 'state state-' + s.toLowerCase()}, s);
}

// An error as the page shows it: the gRPC code and the server's message.
export function error(e) {
  return h(
      'div', {class: 'error', role: 'alert'}, h('b', {}, e.code || 'ERROR'), ' ',
      e.message || String(e));
}

export function section(title, ...children) {
  return h('section', {}, h('h2', {}, title), ...children);
}

// A key/value table of a map (params, tags, environment).
export function mapTable(map, empty = 'none') {
  const entries = Object.entries(map || {}).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return h('p', {class: 'muted'}, empty);
  return h(
      'table', {class: 'kv'},
      h('tbody', {},
        entries.map(
            ([k, v]) =>
                h('tr', {}, h('th', {}, k),
                  h('td', {}, typeof v === 'object' ? JSON.stringify(v) : String(v))))));
}

// A plain table: columns are {title, value(row) -> node or text}; rows can be navigated with the
// arrow keys and opened with Enter when `open(row)` is given.
export function table(columns, rows, options = {}) {
  const body = h('tbody', {});
  for (const row of rows) {
    const tr =
        h('tr', {tabindex: options.open ? '-1' : null},
          columns.map((c) => h('td', {class: c.class}, c.value(row))));
    if (options.open) {
      tr.addEventListener('dblclick', () => options.open(row));
      tr.addEventListener('keydown', (event) => {
        if (event.key === 'Enter') options.open(row);
      });
    }
    body.append(tr);
  }
  const t =
      h('table', {class: 'grid'},
        h('thead', {}, h('tr', {}, columns.map((c) => h('th', {}, c.title)))), body);
  if (options.open) keyboardRows(t, () => [...body.rows]);
  if (!rows.length) return h('div', {}, t, h('p', {class: 'muted'}, options.empty || 'none'));
  return h('div', {class: 'scroll-x'}, t);  // a narrow window scrolls the table, not the page
}

// Up/Down/Home/End move the focus between rows.
function keyboardRows(container, rows) {
  container.addEventListener('keydown', (event) => {
    const list = rows();
    const i = list.indexOf(document.activeElement);
    let next = -1;
    if (event.key === 'ArrowDown')
      next = Math.min(list.length - 1, i + 1);
    else if (event.key === 'ArrowUp')
      next = Math.max(0, i - 1);
    else if (event.key === 'Home')
      next = 0;
    else if (event.key === 'End')
      next = list.length - 1;
    else
      return;
    event.preventDefault();
    if (list[next]) list[next].focus();
  });
}

// A table that renders only the rows in view (and a few around them), so that a hundred thousand
// rows scroll as smoothly as ten. columns: {key, title, width, value(row) -> text, cell(row) ->
// node (optional), sortable}. Keyboard: Up/Down/PageUp/PageDown/Home/End move the cursor, Space
// selects, Enter opens.
export class VirtualTable {
  constructor(options) {
    this.options = options;
    this.rowHeight = 28;
    this.rows = [];
    this.cursor = 0;
    this.selected = new Set();
    this.columns = [];
    this.element =
        h('div',
          {class: 'vtable', tabindex: '0', role: 'grid', 'aria-label': options.label || 'table'});
    this.header = h('div', {class: 'vhead', role: 'row'});
    this.viewport = h('div', {class: 'vbody'});
    this.spacer = h('div', {class: 'vspacer'});
    this.viewport.append(this.spacer);
    this.element.append(this.header, this.viewport);
    this.viewport.addEventListener('scroll', () => this.schedule());
    this.element.addEventListener('keydown', (event) => this.key(event));
    new ResizeObserver(() => this.schedule()).observe(this.viewport);
  }

  setColumns(columns, sort) {
    this.columns = columns;
    this.sort = sort;
    const template = columns.map((c) => c.width || 'minmax(7em, 1fr)').join(' ');
    this.template = template;
    this.header.style.gridTemplateColumns = template;
    this.header.replaceChildren(...columns.map((c) => {
      const arrow = sort && sort.key === c.key ? (sort.desc ? ' ▼' : ' ▲') : '';
      const cell =
          h('div', {class: 'vcell', role: 'columnheader', title: c.title}, c.title + arrow);
      if (c.sortable !== false && this.options.onSort) {
        cell.classList.add('sortable');
        cell.addEventListener('click', () => this.options.onSort(c));
      }
      return cell;
    }));
    this.render(true);
  }

  setRows(rows) {
    this.rows = rows;
    this.cursor = Math.min(this.cursor, Math.max(0, rows.length - 1));
    this.spacer.style.height = rows.length * this.rowHeight + 'px';
    this.render(true);
  }

  schedule() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.render(false);
    });
  }

  render(force) {
    const top = this.viewport.scrollTop;
    const height = this.viewport.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / this.rowHeight) - 10);
    const last = Math.min(this.rows.length, Math.ceil((top + height) / this.rowHeight) + 10);
    if (!force && first === this.first && last === this.last) return;
    this.first = first;
    this.last = last;
    const nodes = [];
    for (let i = first; i < last; ++i) nodes.push(this.rowNode(i));
    this.spacer.replaceChildren(...nodes);
  }

  rowNode(i) {
    const row = this.rows[i];
    const classes = ['vrow'];
    if (i === this.cursor) classes.push('cursor');
    if (this.selected.has(this.options.id(row))) classes.push('selected');
    const node = h('div', {class: classes.join(' '), role: 'row', 'data-index': i});
    node.style.top = i * this.rowHeight + 'px';
    node.style.gridTemplateColumns = this.template;
    for (const c of this.columns) {
      const cell = h('div', {class: 'vcell' + (c.numeric ? ' num' : ''), role: 'gridcell'});
      if (c.cell)
        cell.append(c.cell(row, this));
      else
        cell.textContent = c.value(row);
      node.append(cell);
    }
    node.addEventListener('click', () => {
      this.cursor = i;
      this.render(true);
    });
    node.addEventListener('dblclick', () => this.options.open && this.options.open(row));
    return node;
  }

  toggle(row) {
    const id = this.options.id(row);
    if (this.selected.has(id))
      this.selected.delete(id);
    else
      this.selected.add(id);
    this.render(true);
    if (this.options.onSelect) this.options.onSelect(this.selected);
  }

  key(event) {
    const page = Math.max(1, Math.floor(this.viewport.clientHeight / this.rowHeight) - 1);
    let next = this.cursor;
    switch (event.key) {
      case 'ArrowDown':
        next += 1;
        break;
      case 'ArrowUp':
        next -= 1;
        break;
      case 'PageDown':
        next += page;
        break;
      case 'PageUp':
        next -= page;
        break;
      case 'Home':
        next = 0;
        break;
      case 'End':
        next = this.rows.length - 1;
        break;
      case ' ':
        if (this.rows[this.cursor]) this.toggle(this.rows[this.cursor]);
        event.preventDefault();
        return;
      case 'Enter':
        if (this.rows[this.cursor] && this.options.open) this.options.open(this.rows[this.cursor]);
        return;
      default:
        return;
    }
    event.preventDefault();
    this.cursor = Math.max(0, Math.min(this.rows.length - 1, next));
    const y = this.cursor * this.rowHeight;
    if (y < this.viewport.scrollTop)
      this.viewport.scrollTop = y;
    else if (y + this.rowHeight > this.viewport.scrollTop + this.viewport.clientHeight) {
      this.viewport.scrollTop = y + this.rowHeight - this.viewport.clientHeight;
    }
    this.render(true);
  }
}
