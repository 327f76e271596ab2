// Experiments: every experiment, with links to its runs; several can be opened together (runs
// compared across experiments).
import {all, project} from '../api.js';
import {h, href, link, section, table, time} from '../ui.js';

export async function render(main, params, context) {
  const list = h('div', {});
  const picked = new Set();
  const openPicked = h(
      'a', {class: 'button', href: '#', 'aria-disabled': 'true'}, 'Runs of the chosen experiments');
  const update = () => {
    openPicked.setAttribute('href', href({view: 'runs', experiments: [...picked].join(',')}));
    openPicked.setAttribute('aria-disabled', String(picked.size === 0));
  };
  async function load() {
    const experiments = await all(
        'metadata', 'ListExperiments', {pageSize: 1000, project: project()}, 'experiments', 100000,
        {signal: context.signal});
    experiments.sort((a, b) => Number(b.createTimeMs || 0) - Number(a.createTimeMs || 0));
    list.replaceChildren(table(
        [
          {
            title: '',
            value: (e) => h('input', {
              type: 'checkbox',
              'aria-label': 'choose ' + e.name,
              checked: picked.has(e.id),
              onchange: (event) => {
                if (event.target.checked)
                  picked.add(e.id);
                else
                  picked.delete(e.id);
                update();
              }
            })
          },
          {title: 'Name', value: (e) => link({view: 'runs', experiments: e.id}, e.name)},
          {title: 'Id', value: (e) => h('code', {}, e.id)},
          {title: 'Created', value: (e) => time(e.createTimeMs)},
          {title: 'Description', value: (e) => e.description || ''},
          {
            title: 'Tags',
            value: (e) => Object.entries(e.tags || {}).map(([k, v]) => `${k}=${v}`).join(', ')
          },
        ],
        experiments, {
          empty: 'No experiments yet: `mlops run` creates one.',
          open: (e) => context.go({view: 'runs', experiments: e.id})
        }));
  }
  await load();
  main.replaceChildren(section('Experiments', h('p', {}, openPicked), list));
  return {refresh: load};
}
