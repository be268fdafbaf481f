// Tasks: one page of the live tasks, selected, sorted and paged by the agent
// (so a million tasks cost one page), with the ones findings cover
// highlighted; a task's details under the table.

import { badge, fill, h, link, note } from '../dom.js';
import { clock, count, duration } from '../format.js';
import { covers, indexFindings, severityOf, taskBadges } from '../highlight.js';
import { fromParams } from '../query.js';
import { renderStack, stackOf } from './stack.js';

export const title = 'Tasks';

const PAGE_SIZES = [50, 100, 500];
const DEFAULT_LIMIT = 100;

/** The table's query, from the hash: `#/tasks?sort=idle&state=idle&site=3`. */
export function query(params) {
  const q = fromParams(params);
  q.limit = q.limit ?? DEFAULT_LIMIT;
  return q;
}

/** The selected task, when the page may not show it. */
export function detailQuery(params) {
  const id = params.get('task');
  return id && /^\d+$/.test(id) ? { id, limit: 1 } : null;
}

const COLUMNS = [
  ['id', 'ID'],
  [null, 'State'],
  [null, 'Wait'],
  [null, 'Problems'],
  ['idle', 'Idle for'],
  ['running', 'Running for'],
  ['polls', 'Polls'],
  ['busy', 'Busy'],
  ['age', 'Age'],
  [null, 'Spawned at'],
];

function href(params, changes) {
  const p = new URLSearchParams(params);
  for (const [k, v] of Object.entries(changes)) {
    if (v == null || v === '') p.delete(k);
    else p.set(k, String(v));
  }
  const qs = p.toString();
  return `#/tasks${qs ? `?${qs}` : ''}`;
}

function select(label, name, value, options, ctx) {
  return h(
    'label',
    {},
    `${label} `,
    h(
      'select',
      { name, onchange: (e) => ctx.navigate(href(ctx.params, { [name]: e.target.value, offset: null, task: null })) },
      options.map(([v, text]) => h('option', { value: v, selected: String(v) === String(value ?? '') }, text)),
    ),
  );
}

function filters(data, ctx) {
  const p = ctx.params;
  const waits = Object.entries(data.task_counts?.by_wait ?? {}).sort((a, b) => b[1] - a[1]);
  const sites = data.sites.filter((s) => s.live > 0 || String(s.id) === p.get('site'));
  return h(
    'form',
    { class: 'filters', onsubmit: (e) => e.preventDefault() },
    select('State', 'state', p.get('state'), [['', 'all'], ['idle', 'idle'], ['running', 'running']], ctx),
    select('Wait', 'wait', p.get('wait'), [['', 'all'], ...waits.map(([w, n]) => [w, `${w} (${count(n)})`]), ['none', 'none (running or lean mode)']], ctx),
    select('Spawn site', 'site', p.get('site'), [['', 'all'], ...sites.map((s) => [s.id, `${s.location} (${count(s.live)})`])], ctx),
    h(
      'label',
      {},
      'IDs ',
      h('input', {
        name: 'id',
        value: p.get('id') ?? '',
        placeholder: 'e.g. 12,40',
        size: 12,
        onchange: (e) => ctx.navigate(href(p, { id: e.target.value.replace(/\s+/g, ''), offset: null })),
      }),
    ),
    h(
      'label',
      {},
      'Idle ≥ ',
      h('input', {
        name: 'min_idle',
        type: 'number',
        min: 0,
        step: 'any',
        value: p.get('min_idle') ? Number(p.get('min_idle')) / 1000 : '',
        placeholder: 's',
        class: 'short',
        onchange: (e) => ctx.navigate(href(p, { min_idle: e.target.value === '' ? null : Math.round(Number(e.target.value) * 1000), offset: null })),
      }),
      ' s',
    ),
    h(
      'label',
      {},
      'Polls ',
      ['min_polls', 'max_polls'].map((name, i) => [
        i ? ' to ' : '',
        h('input', {
          name,
          type: 'number',
          min: 0,
          value: p.get(name) ?? '',
          placeholder: i ? 'max' : 'min',
          class: 'short',
          'aria-label': i ? 'at most this many polls' : 'at least this many polls',
          onchange: (e) => ctx.navigate(href(p, { [name]: e.target.value, offset: null })),
        }),
      ]),
    ),
    select('Rows', 'limit', p.get('limit') ?? DEFAULT_LIMIT, PAGE_SIZES.map((n) => [n, String(n)]), ctx),
    h('a', { href: '#/tasks', class: 'clear' }, 'clear filters'),
  );
}

function header(params) {
  const sort = params.get('sort') ?? 'id';
  const order = params.get('order') ?? (sort === 'id' ? 'asc' : 'desc');
  return h(
    'tr',
    {},
    COLUMNS.map(([key, label]) => {
      if (!key) return h('th', { scope: 'col' }, label);
      const active = key === sort;
      const next = active ? (order === 'asc' ? 'desc' : 'asc') : key === 'id' ? 'asc' : 'desc';
      return h(
        'th',
        { scope: 'col', 'aria-sort': active ? (order === 'asc' ? 'ascending' : 'descending') : null },
        h('a', { href: href(params, { sort: key, order: next, offset: null }), class: 'sort' }, label, active ? (order === 'asc' ? ' ▲' : ' ▼') : ''),
      );
    }),
  );
}

function row(t, index, ctx) {
  const badges = taskBadges(t, index);
  const sev = severityOf(badges);
  const selected = ctx.params.get('task') === String(t.id);
  const open = () => ctx.navigate(href(ctx.params, { task: t.id }));
  return h(
    'tr',
    {
      class: `task${sev ? ` sev-${sev}` : ''}${selected ? ' selected' : ''}`,
      'data-task-id': t.id,
      'data-problems': badges.map((b) => b.kind).join(' '),
      onclick: open,
    },
    h('td', { class: 'num' }, link(href(ctx.params, { task: t.id }), String(t.id))),
    h('td', {}, t.state),
    h('td', { class: 'nowrap' }, t.wait ?? '–'),
    h('td', { class: 'badges' }, badges.map(badge)),
    h('td', { class: 'num' }, t.state === 'idle' ? duration(t.idle_ms) : '–'),
    h('td', { class: 'num' }, t.state === 'running' ? duration(t.running_ms) : '–'),
    h('td', { class: 'num' }, count(t.polls)),
    h('td', { class: 'num' }, duration(t.busy_ms)),
    h('td', { class: 'num' }, duration(t.age_ms)),
    h('td', {}, t.name ? [h('span', { class: 'task-name' }, t.name), ' '] : null, h('code', {}, t.spawned_at)),
  );
}

function pager(data, ctx) {
  const offset = Number(ctx.params.get('offset') ?? 0);
  const limit = Number(ctx.params.get('limit') ?? DEFAULT_LIMIT);
  const total = data.tasks_total;
  const first = total ? offset + 1 : 0;
  const last = offset + data.tasks.length;
  return h(
    'div',
    { class: 'pager' },
    offset > 0 ? link(href(ctx.params, { offset: Math.max(0, offset - limit) || null }), '← previous') : h('span', { class: 'muted' }, '← previous'),
    h('span', { role: 'status' }, ` ${count(first)}–${count(last)} of ${count(total)} matching · ${count(data.task_counts?.total)} live `),
    last < total ? link(href(ctx.params, { offset: offset + limit }), 'next →') : h('span', { class: 'muted' }, 'next →'),
  );
}

function timeline(t, ctx) {
  const now = ctx.fetchedAt;
  const items = [h('li', {}, `spawned at ${clock(now, t.age_ms)} (${duration(t.age_ms)} ago)`)];
  items.push(h('li', {}, `polled ${count(t.polls)} time${t.polls === 1 ? '' : 's'}, ${duration(t.busy_ms)} inside polls in all`));
  if (t.state === 'running') items.push(h('li', {}, `inside a poll since ${clock(now, t.running_ms)} (${duration(t.running_ms)})`));
  else items.push(h('li', {}, `idle since ${clock(now, t.idle_ms)} (${duration(t.idle_ms)})${t.wait ? `, waiting on ${t.wait}` : ''}`));
  // What this page saw across refreshes: the state changes.
  const seen = ctx.history.get(t.id) ?? [];
  const changes = seen.filter((o, i) => i === 0 || o.state !== seen[i - 1].state || o.polls !== seen[i - 1].polls);
  return h(
    'div',
    {},
    h('h4', {}, 'State history'),
    h('ul', { class: 'timeline' }, items),
    seen.length > 1
      ? h(
          'details',
          {},
          h('summary', {}, `observed ${seen.length} times since ${clock(seen[0].at)}; ${changes.length - 1} change${changes.length === 2 ? '' : 's'}`),
          h('ul', { class: 'timeline small' }, changes.map((o) => h('li', {}, `${clock(o.at)} ${o.state}, ${count(o.polls)} polls`))),
        )
      : null,
  );
}

/** `tokio::sync::Mutex created at src/db.rs:40:17` */
function resourceText(r) {
  return `${r.type} created at ${r.created_at}`;
}

/** `1 permit`, `3 permits` */
function permits(n) {
  return n === 1 ? '1 permit' : `${n} permits`;
}

/** Who holds a resource: `task 8`, a semaphore's `task 8 (2 permits)`, and those not named. */
function holdersText(r) {
  const counts = r.held_permits ?? [];
  return [
    ...(r.held_by ?? []).map((id, i) => (counts[i] !== undefined ? `task ${id} (${permits(counts[i])})` : `task ${id}`)),
    ...(r.held_outside ? ['code outside any task'] : []),
    ...(r.more_holders ? [`${r.more_holders} more readers`] : []),
    ...(r.more_permits ? [`other tasks (${permits(r.more_permits)})`] : []),
  ];
}

/** Deep mode: the lock or semaphore a task waits on and who holds it, and those it holds. */
function resourceRows(t, data) {
  const rows = [];
  const r = t.resource;
  if (r) {
    const holders = holdersText(r);
    rows.push(['waiting on', `${resourceText(r)}${holders.length ? `, held by ${holders.join(', ')}` : ''}`]);
  }
  const held = (data.resources?.list ?? []).filter((x) => (x.held_by ?? []).includes(t.id));
  if (held.length) rows.push(['holding', held.map(resourceText).join('; ')]);
  return rows;
}

function detail(t, data, index, ctx) {
  const badges = taskBadges(t, index);
  const stack = stackOf(data, t.parked_at);
  const findings = [...(index.byTask.get(t.id) ?? []), ...(index.byLocation.get(t.spawned_at) ?? []).filter((f) => !(f.task_ids ?? []).includes(t.id) && covers(f, t))];
  const site = data.sites.find((s) => s.id === t.site);
  const numbers = [
    ...(t.name ? [['name', t.name]] : []),
    ['state', t.state],
    ['wait', t.wait ?? (data.agent?.features?.deep ? '–' : 'unknown in lean mode')],
    ...resourceRows(t, data),
    [t.state === 'idle' ? 'idle for' : 'running for', duration(t.state === 'idle' ? t.idle_ms : t.running_ms)],
    ['polls', count(t.polls)],
    ['busy', duration(t.busy_ms)],
    ['age', duration(t.age_ms)],
    ['live wakers', t.wakers ?? '–'],
    ['wakes', t.wakes == null ? '–' : `${count(t.wakes)} (${count(t.self_wakes ?? 0)} by itself)`],
    ['woken', t.woken == null ? '–' : t.woken ? 'yes, scheduled to run' : 'no'],
  ];
  return h(
    'section',
    { class: `detail${badges.length ? ` sev-${badges[0].severity}` : ''}`, 'aria-label': `task ${t.id}`, id: 'task-detail' },
    h('div', { class: 'detail-head' }, h('h3', {}, `Task ${t.id} `, t.name ? [h('span', { class: 'task-name' }, t.name), ' '] : null, badges.map(badge)), link(href(ctx.params, { task: null }), 'close ✕')),
    h('p', {}, 'Spawned at ', h('code', {}, t.spawned_at), site ? [' · ', link(`#/tasks?site=${site.id}&sort=idle`, 'tasks of this site'), ' · ', link(`#/sites?site=${site.id}`, 'spawn site')] : null),
    findings.map((f) => note(f.severity === 'info' ? 'info' : 'warn', f.message)),
    h('dl', { class: 'numbers' }, numbers.map(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))])),
    h('h4', {}, t.state === 'idle' ? 'Async backtrace (where it is parked)' : 'Last parked at (before the current poll)'),
    stack
      ? renderStack(stack)
      : h('p', { class: 'muted' }, data.agent?.features?.deep ? 'No parked-at stack recorded for this task.' : 'Parked-at stacks need deep mode (the default `deep` feature).'),
    timeline(t, ctx),
  );
}

export function render(el, data, ctx) {
  const index = indexFindings(data.findings);
  const selectedId = ctx.params.get('task');
  const selected = selectedId && (data.tasks.find((t) => String(t.id) === selectedId) ?? ctx.detail?.tasks?.[0]);
  const detailData = selected && !data.tasks.includes(selected) ? ctx.detail : data;
  fill(
    el,
    filters(data, ctx),
    ctx.params.get('id') ? note('info', 'Showing the tasks a finding names (at most 100 per finding). ', link('#/tasks', 'show all tasks')) : null,
    h(
      'div',
      { class: selectedId ? 'split' : '' },
      h(
        'div',
        { class: 'table-wrap' },
        pager(data, ctx),
        h('table', { class: 'tasks' }, h('thead', {}, header(ctx.params)), h('tbody', {}, data.tasks.map((t) => row(t, index, ctx)))),
        data.tasks.length ? null : h('p', { class: 'muted' }, 'No task matches.'),
      ),
      selected ? detail(selected, detailData, index, ctx) : selectedId ? note('info', `Task ${selectedId} is not live any more.`) : null,
    ),
  );
}
