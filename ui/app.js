// The web UI's shell: one page at "/" whose state is the query string (every view can be shared
// by its URL), a navigation bar, auto-refresh, and a prompt for a token when the server wants one.
import {ApiError, setToken} from './api.js';
import * as compare from './pages/compare.js';
import * as datasets from './pages/datasets.js';
import * as experiments from './pages/experiments.js';
import * as lineage from './pages/lineage.js';
import * as models from './pages/models.js';
import * as monitoring from './pages/monitoring.js';
import * as pipelines from './pages/pipelines.js';
import * as run from './pages/run.js';
import * as runs from './pages/runs.js';
import {error, h, href} from './ui.js';

const PAGES = {
  experiments: {module: experiments, title: 'Experiments', nav: true},
  runs: {module: runs, title: 'Runs'},
  run: {module: run, title: 'Run'},
  compare: {module: compare, title: 'Compare'},
  datasets: {module: datasets, title: 'Datasets', nav: true},
  lineage: {module: lineage, title: 'Lineage', nav: true},
  models: {module: models, title: 'Models', nav: true},
  pipelines: {module: pipelines, title: 'Pipelines', nav: true},
  monitoring: {module: monitoring, title: 'Monitoring', nav: true},
};

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const autoRefresh = document.getElementById('auto-refresh');
const projectBox = document.getElementById('project');
let current = null;  // {page, controller}

function params() {
  return Object.fromEntries(new URLSearchParams(location.search));
}

function viewOf(p) {
  return PAGES[p.view] ? p.view : 'experiments';
}

// Goes to another view (a new history entry) or, with replace, records the current view's state
// in the URL without drawing it again.
export function go(state, {replace = false} = {}) {
  const url = href(state);
  if (replace) {
    history.replaceState(null, '', url);
    return;
  }
  history.pushState(null, '', url);
  render();
}

// Charts whose canvas left the page (a page redrawn by refresh, or left) are released.
function releaseCharts() {
  for (const chart of Object.values(Chart.instances || {})) {
    if (!chart.canvas || !chart.canvas.isConnected) chart.destroy();
  }
}

async function render() {
  if (current && current.page && current.page.dispose) current.page.dispose();
  releaseCharts();
  if (current) current.controller.abort();
  const controller = new AbortController();
  current = {controller, page: null};
  const p = params();
  const view = viewOf(p);
  document.title = `${PAGES[view].title} · mlops`;
  for (const a of nav.children) {
    a.classList.toggle('active', a.dataset.view === view);
    a.setAttribute('href', href({view: a.dataset.view}));  // in the page's project
  }
  projectBox.value = p.project || '';
  main.replaceChildren(h('p', {class: 'muted'}, 'loading…'));
  const context = {signal: controller.signal, go, params: p};
  try {
    const page = await PAGES[view].module.render(main, p, context);
    if (current.controller === controller) current.page = page || null;
  } catch (e) {
    if (controller.signal.aborted) return;
    main.replaceChildren(error(e));
    if (e instanceof ApiError && e.code === 'UNAUTHENTICATED') main.append(tokenForm());
    console.warn(e);
  }
}

function tokenForm() {
  const input =
      h('input',
        {type: 'password', placeholder: 'token', 'aria-label': 'token', autocomplete: 'off'});
  return h(
      'form', {
        class: 'token',
        onsubmit: (event) => {
          event.preventDefault();
          setToken(input.value.trim());
          render();
        }
      },
      'The server asks for a token (mlops auth): ', input, h('button', {}, 'Use'));
}

// Links inside the page that only change the query string are followed without reloading.
document.addEventListener('click', (event) => {
  const a = event.target.closest('a');
  if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey ||
      event.shiftKey || a.target) {
    return;
  }
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname !== '/') return;
  event.preventDefault();
  history.pushState(null, '', url.search || '?');
  render();
});
window.addEventListener('popstate', render);

for (const [view, page] of Object.entries(PAGES)) {
  if (page.nav) nav.append(h('a', {href: '?view=' + view, 'data-view': view}, page.title));
}
// Another project: its experiments (the views of one project are not another's).
projectBox.addEventListener('change', () => {
  go({view: 'experiments', project: projectBox.value.trim()});
});

// Auto-refresh (on unless turned off; remembered): every 5 s the page's refresh(), if it has one,
// while the tab is visible.
autoRefresh.checked = localStorage.getItem('mlops.autoRefresh') !== 'off';
autoRefresh.addEventListener('change', () => {
  localStorage.setItem('mlops.autoRefresh', autoRefresh.checked ? 'on' : 'off');
});
setInterval(async () => {
  if (!autoRefresh.checked || document.hidden || !current || !current.page) return;
  if (!current.page.refresh || current.refreshing) return;
  current.refreshing = true;
  try {
    await current.page.refresh();
    releaseCharts();
  } catch (e) {
    console.warn('refresh:', e);
  } finally {
    if (current) current.refreshing = false;
  }
}, 5000);

render();
