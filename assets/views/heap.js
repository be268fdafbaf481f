// Heap: where memory in use was allocated (allocation sites, spawn sites,
// tasks), what keeps growing, and the in-use flamegraph.

import { fill, h, link, note, stat } from '../dom.js';
import { bytes, bytesPerSecond, count, duration } from '../format.js';
import { heapGrowth } from '../highlight.js';
import { sparkline } from '../sparkline.js';
import { loadProfile } from './embed.js';

export const title = 'Heap';

export function query() {
  return { limit: 0 };
}

const ENABLE =
  'Install taskscope\'s allocator in the application\'s main.rs and rebuild: #[global_allocator] static GLOBAL: taskscope::Allocator = taskscope::Allocator::system();';

const SAMPLES = ['inuse_space', 'inuse_objects', 'alloc_space', 'alloc_objects'];

function table(caption, columns, rows, compact = false) {
  return h(
    'table',
    { class: compact ? 'compact' : null },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows),
  );
}

function tables(heap, data) {
  const growth = heapGrowth(heap, data.findings);
  const growing = [...growth.entries()].sort((a, b) => (b[1].perSecond ?? 0) - (a[1].perSecond ?? 0));
  const t = heap.totals ?? {};
  return [
    heap.problem ? note('warn', heap.problem) : null,
    h(
      'div',
      { class: 'stats' },
      stat('in use', bytes(t.inuse_bytes)),
      stat('objects in use', count(t.inuse_objects)),
      stat('allocated', bytes(t.allocated_bytes)),
      stat('freed', bytes(t.freed_bytes)),
      stat('outside tasks', bytes(heap.outside_tasks_bytes)),
      stat('sampling', heap.sample_bytes ? `every ${bytes(heap.sample_bytes)}` : 'off'),
    ),
    growing.length
      ? note('warn', `${growing.length} allocation site${growing.length === 1 ? '' : 's'} growing: `, growing.map(([loc, g], i) => [i ? '; ' : '', h('code', {}, loc), ` ${bytesPerSecond(g.perSecond)}`]))
      // The detector judges growth at three scales: the window, 10 and 60 windows.
      : note('info', `No growing allocation site${heap.growth_window_ms ? ` over the last ${duration(heap.growth_window_ms)}, ${duration(10 * heap.growth_window_ms)} or ${duration(60 * heap.growth_window_ms)}` : ''}.`),
    table(
      'Allocation sites by bytes in use (estimated from samples)',
      ['Allocation site', 'Function', 'In use', 'Objects', 'Allocated', 'In use, recent', 'Growth'],
      (heap.allocation_sites ?? []).map((a) => {
        const g = growth.get(a.location);
        return h(
          'tr',
          { class: g ? 'sev-warning' : '', 'data-location': a.location },
          h('td', {}, h('code', {}, a.location), g ? [' ', h('span', { class: 'badge sev-warning' }, 'growing')] : null),
          h('td', {}, h('code', { class: 'small' }, a.function)),
          h('td', { class: 'num' }, bytes(a.inuse_bytes)),
          h('td', { class: 'num' }, count(a.inuse_objects)),
          h('td', { class: 'num' }, bytes(a.alloc_bytes)),
          h('td', { class: 'spark-cell' }, sparkline(a.history, { label: `bytes in use allocated at ${a.location}`, format: bytes })),
          h('td', { class: 'num' }, g ? bytesPerSecond(g.perSecond) : '–'),
        );
      }),
    ),
    table(
      'Spawn sites by bytes in use that their tasks allocated',
      ['Spawn site', 'In use', 'Objects'],
      (heap.sites ?? []).map((s) =>
        h('tr', {}, h('td', {}, link(`#/tasks?site=${s.site}&sort=idle`, h('code', {}, s.location))), h('td', { class: 'num' }, bytes(s.inuse_bytes)), h('td', { class: 'num' }, count(s.inuse_objects))),
      ),
      true,
    ),
    table(
      'Tasks by bytes in use that they allocated',
      ['Task', 'Spawned at', 'In use', 'Objects'],
      (heap.tasks ?? []).slice(0, 20).map((t) =>
        h(
          'tr',
          {},
          h('td', { class: 'num' }, link(`#/tasks?id=${t.id}&task=${t.id}`, String(t.id))),
          h('td', {}, h('code', {}, t.spawned_at)),
          h('td', { class: 'num' }, bytes(t.inuse_bytes)),
          h('td', { class: 'num' }, count(t.inuse_objects)),
        ),
      ),
      true,
    ),
  ];
}

function flamegraph(ctx) {
  const box = h('div', { class: 'flame-box', id: 'heap-flame' });
  const sample = h('select', { name: 'sample' }, SAMPLES.map((s) => h('option', { value: s }, s.replace('_', ' '))));
  const load = () =>
    loadProfile(box, ctx.source, '../pprof/heap/flamegraph', { sample: sample.value }, { label: 'heap flamegraph' }).catch((e) => ctx.onError?.(e));
  const form = h('form', { class: 'filters', onsubmit: (e) => (e.preventDefault(), load()) }, h('label', {}, 'Show ', sample), h('button', { type: 'submit' }, 'Load heap flamegraph'));
  return { node: h('section', { 'aria-label': 'heap flamegraph' }, h('h3', {}, 'Heap flamegraph'), form, box), load };
}

export function render(el, data, ctx) {
  const heap = data.heap;
  if (!heap || !heap.enabled) {
    el.parts = null;
    fill(
      el,
      note(
        'info',
        heap ? 'Heap profiling is off. ' : 'Heap profiling data is not available: this agent\'s snapshot has no heap section (an older taskscope). ',
        heap?.problem ?? ENABLE,
      ),
    );
    return;
  }
  if (!el.parts) {
    const numbers = h('div', {});
    const flame = ctx.offline ? { node: note('info', 'This is a saved snapshot: the heap flamegraph needs the live agent.') } : flamegraph(ctx);
    fill(el, numbers, flame.node);
    el.parts = { numbers };
    flame.load?.();
  }
  fill(el.parts.numbers, tables(heap, data));
}
