// Overview: the health of the app at a glance, then every finding with a
// link to the tasks or the site it is about.

import { badge, fill, h, link, note, severityBadge, stat } from '../dom.js';
import { bytes, count, duration, shortPath } from '../format.js';
import { badgeOf, summarize } from '../highlight.js';
import { sparkline } from '../sparkline.js';

export const title = 'Overview';

/** The overview needs no task rows: counts come with every snapshot. */
export function query() {
  return { limit: 0 };
}

function siteId(data, location) {
  return data.sites.find((s) => s.location === location)?.id;
}

/** Where a finding leads: its tasks, its spawn site, or the heap. */
function links(f, data) {
  const out = [];
  if (f.kind === 'heap_growth') return [link('#/heap', 'heap →')];
  if (f.task_ids?.length) {
    const n = f.evidence?.tasks ?? f.task_ids.length;
    out.push(link(`#/tasks?id=${f.task_ids.join(',')}`, `${count(n)} task${n === 1 ? '' : 's'} →`));
  }
  const site = siteId(data, f.location);
  if (site != null) out.push(link(`#/sites?site=${site}`, 'spawn site →'));
  if (f.kind === 'blocked_worker') out.push(link('#/workers', 'workers →'));
  return out;
}

/** `f at /root/.cargo/registry/.../tokio-1.54.1/src/x.rs:3` with a readable path. */
function frameLine(line) {
  const at = line.lastIndexOf(' at ');
  return at < 0 ? line : `${line.slice(0, at)} at ${shortPath(line.slice(at + 4))}`;
}

function finding(f, data) {
  const b = badgeOf(f);
  const parked = f.evidence?.parked_at;
  return h(
    'li',
    { class: `finding sev-${f.severity}`, 'data-kind': f.kind },
    h('div', { class: 'finding-head' }, severityBadge(f.severity), ' ', badge(b), ' ', h('code', {}, f.location), h('span', { class: 'muted' }, ` for ${duration(f.since_ms)}`)),
    h('p', {}, f.message),
    Array.isArray(f.evidence?.history)
      ? h('p', { class: 'small muted' }, sparkline(f.evidence.history, { width: 240, label: `live tasks at ${f.location}, one sample a second`, format: count }), ' live tasks, one sample a second')
      : null,
    Array.isArray(parked) && parked.length ? h('pre', { class: 'stack small', 'aria-label': 'parked at' }, parked.map(frameLine).join('\n')) : null,
    h('div', { class: 'links' }, links(f, data)),
  );
}

export function render(el, data) {
  const s = summarize(data);
  const waits = Object.entries(s.tasks.by_wait ?? {}).sort((a, b) => b[1] - a[1]);
  const agent = data.agent ?? {};
  const features = agent.features ?? {};
  fill(
    el,
    h(
      'div',
      { class: 'cards' },
      h(
        'section',
        { class: 'card', 'aria-label': 'tasks' },
        h('h2', {}, 'Tasks'),
        h('div', { class: 'stats' }, stat('live', count(s.tasks.total)), stat('idle', count(s.tasks.idle)), stat('running', count(s.tasks.running))),
        waits.length
          ? h('ul', { class: 'waits' }, waits.slice(0, 6).map(([w, n]) => h('li', {}, link(`#/tasks?wait=${encodeURIComponent(w)}&sort=idle`, w), ` ${count(n)}`)))
          : h('p', { class: 'muted' }, features.deep ? 'no idle task' : 'wait reasons need deep mode'),
      ),
      h(
        'section',
        { class: 'card', 'aria-label': 'findings' },
        h('h2', {}, 'Findings'),
        h('div', { class: 'stats' }, ['critical', 'warning', 'info'].map((sev) => stat(sev, count(s.findings[sev]), null))),
      ),
      h(
        'section',
        { class: 'card', 'aria-label': 'workers' },
        h('h2', {}, 'Workers'),
        h(
          'div',
          { class: 'stats' },
          stat('workers', count(s.workers.total)),
          stat('blocked', count(s.workers.blocked), s.workers.blocked ? h('span', { class: 'badge sev-warning' }, 'blocked') : null),
        ),
      ),
      h(
        'section',
        { class: 'card', 'aria-label': 'heap' },
        h('h2', {}, 'Heap'),
        s.heap
          ? h('div', { class: 'stats' }, stat('in use', bytes(s.heap.inuse)), stat('growing sites', count(data.heap?.growth?.length ?? 0)))
          : h('p', { class: 'muted' }, 'heap profiling is off — ', link('#/heap', 'how to enable it')),
      ),
      h(
        'section',
        { class: 'card', 'aria-label': 'agent' },
        h('h2', {}, 'Agent'),
        h(
          'div',
          { class: 'stats' },
          stat('dropped tasks', count(s.dropped.tasks)),
          stat('sites overflowed', count(s.dropped.sites)),
          stat('heap samples dropped', count(s.dropped.heapSamples)),
          stat('panics', count(s.dropped.panics)),
        ),
        h(
          'p',
          { class: 'muted small' },
          `taskscope ${agent.version ?? '?'} · ${features.deep ? 'deep' : 'lean'} mode · up ${duration(agent.uptime_ms)} · snapshot took ${duration(agent.snapshot_ms)}`,
        ),
      ),
    ),
    h('h2', {}, 'Findings'),
    data.findings.length
      ? h('ul', { class: 'findings' }, data.findings.map((f) => finding(f, data)))
      : note('info', 'No findings: no stuck or leaking tasks, no blocked worker.'),
  );
}
