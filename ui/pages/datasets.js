// Datasets: every dataset; one dataset's versions with their tags, the files of a version with
// their sizes, and the difference between two versions.
import {all, call, project} from '../api.js';
import {bytes, h, link, section, table, time} from '../ui.js';

function short(digest) {
  return h('code', {title: digest}, String(digest || '').slice(0, 12));
}

async function list(main, context) {
  async function load() {
    const datasets = await all(
        'artifact', 'ListDatasets', {pageSize: 1000, project: project()}, 'datasets', 100000,
        {signal: context.signal});
    main.replaceChildren(section(
        'Datasets',
        table(
            [
              {title: 'Name', value: (d) => link({view: 'datasets', name: d.name}, d.name)},
              {title: 'Versions', class: 'num', value: (d) => d.versionCount || '0'},
              {title: 'Latest', value: (d) => short(d.latestDigest)},
              {title: 'Created', value: (d) => time(d.createTimeMs)},
              {title: 'Description', value: (d) => d.description || ''},
            ],
            datasets, {
              empty: 'No datasets yet: `mlops data push DIR --dataset NAME`.',
              open: (d) => context.go({view: 'datasets', name: d.name})
            })));
  }
  await load();
  return {refresh: load};
}

export async function render(main, params, context) {
  if (!params.name) return list(main, context);
  const name = params.name;
  const versions = await all(
      'artifact', 'ListVersions', {dataset: name, pageSize: 1000}, 'versions', 10000,
      {signal: context.signal});
  const ref = params.version || (versions[0] && versions[0].digest) || '';
  const files = h('div', {});
  const diff = h('div', {});
  const save = (extra) =>
      context.go({view: 'datasets', name, version: ref, ...extra}, {replace: true});

  async function showFiles(version) {
    if (!version) return;
    const entries = await all(
        'artifact', 'ListVersionEntries', {dataset: name, ref: version, pageSize: 10000}, 'entries',
        100000);
    files.replaceChildren(section(
        `Files of ${version.slice(0, 12)} (${entries.length})`,
        table(
            [
              {title: 'Path', value: (e) => e.path},
              {title: 'Size', class: 'num', value: (e) => bytes(e.size)},
              {title: 'Digest', value: (e) => short(e.digest)},
            ],
            entries)));
  }

  const options = () => versions.map(
      (v) =>
          h('option', {value: v.digest},
            `${v.digest.slice(0, 12)} ${(v.tags || []).join(' ')} ${time(v.createTimeMs)}`));
  const fromSelect = h('select', {'aria-label': 'from version'}, options());
  const toSelect = h('select', {'aria-label': 'to version'}, options());
  if (versions.length > 1) {
    fromSelect.value = params.from || versions[1].digest;
    toSelect.value = params.to || versions[0].digest;
  }
  async function showDiff() {
    save({from: fromSelect.value, to: toSelect.value});
    const response = await call(
        'artifact', 'DiffVersions',
        {fromDataset: name, fromRef: fromSelect.value, toRef: toSelect.value, pageSize: 10000});
    const s = response.summary || {};
    diff.replaceChildren(
        h('p', {class: 'diff-summary'},
          `${s.added || 0} added (${bytes(s.bytesAdded)}), ` +
              `${s.removed || 0} removed (${bytes(s.bytesRemoved)}), ${
                  s.modified || 0} modified, ` +
              `${s.unchanged || 0} unchanged`),
        table(
            [
              {
                title: 'Change',
                value: (c) => h('span', {class: 'change-' + String(c.kind).toLowerCase()}, c.kind)
              },
              {title: 'Path', value: (c) => c.path},
              {title: 'Before', class: 'num', value: (c) => c.from ? bytes(c.from.size) : ''},
              {title: 'After', class: 'num', value: (c) => c.to ? bytes(c.to.size) : ''},
            ],
            response.changes || [], {empty: 'The two versions hold the same files.'}));
  }

  // Validations of the dataset (docs/validation.md); none shown where there is no monitoring.
  let validations = [];
  try {
    validations = (await call('monitoring', 'ListValidations', {dataset: name, pageSize: 20}, {
                    signal: context.signal
                  })).reports ||
        [];
  } catch (e) {
    if (e.name === 'AbortError') throw e;
  }
  main.replaceChildren(
      h('h2', {}, 'Dataset ', name),
      section(
          'Versions',
          table(
              [
                {
                  title: 'Digest',
                  value: (v) => link({view: 'datasets', name, version: v.digest}, short(v.digest))
                },
                {
                  title: 'Tags',
                  value: (v) => (v.tags || []).map((t) => h('span', {class: 'tag'}, t))
                },
                {title: 'Created', value: (v) => time(v.createTimeMs)},
                {title: 'Files', class: 'num', value: (v) => v.fileCount || '0'},
                {title: 'Size', class: 'num', value: (v) => bytes(v.totalBytes)},
                {title: 'Message', value: (v) => v.message || ''},
                {
                  title: 'Lineage',
                  value: (v) => link({view: 'lineage', digest: v.digest}, 'lineage')
                },
              ],
              versions, {open: (v) => context.go({view: 'datasets', name, version: v.digest})})),
      versions.length > 1 ? section(
                                'Difference',
                                h('p', {}, 'from ', fromSelect, ' to ', toSelect, ' ',
                                  h('button', {onclick: () => showDiff()}, 'Compare')),
                                diff) :
                            '',
      files,
      validations.length ?
          section(
              'Validations',
              table(
                  [
                    {title: 'Time', value: (r) => time(r.timeMs)},
                    {
                      title: 'Version',
                      value: (r) => r.blob ? 'blob ' + short(r.blob) :
                                             short((r.dataset || '').split('@')[1] || '')
                    },
                    {
                      title: 'Schema',
                      value: (r) => r.schema ? `${r.schema}@${r.schemaVersion}` : '(given)'
                    },
                    {title: 'Rows', class: 'num', value: (r) => r.rows || '0'},
                    {
                      title: 'Verdict',
                      value: (r) => h('span', {class: 'tag verdict'}, r.valid ? 'valid' : 'INVALID')
                    },
                    {
                      title: 'Anomalies',
                      value: (r) => h('ul', {class: 'anomalies'},
                                      (r.anomalies || []).map((a) => h('li', {}, a.description)))
                    },
                  ],
                  validations)) :
          '');
  await showFiles(ref);
  if (params.from && params.to) await showDiff();
  return null;
}
