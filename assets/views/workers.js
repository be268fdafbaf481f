// Workers: the runtime's worker threads, and the tasks that block them (a
// poll that does not return keeps its worker from running anything else).

import { badge, fill, h, link, note } from '../dom.js';
import { count, duration } from '../format.js';
import { blockedWorkers, indexFindings, stalledWorkers, taskBadges } from '../highlight.js';
import { renderStack, stackOf } from './stack.js';

export const title = 'Workers';

/** The running tasks, longest poll first: the blocking ones among them. */
export function query() {
  return { state: 'running', sort: 'running', limit: 50 };
}

function card(b, data, ctx) {
  const t = data.tasks.find((x) => x.id === b.taskId);
  const stack = t && stackOf(data, t.parked_at);
  return h(
    'li',
    { class: 'card blocked sev-warning', 'data-task-id': b.taskId },
    h('h3', {}, h('span', { class: 'badge sev-warning' }, 'blocked'), ` task ${b.taskId} has been inside one poll for ${duration(t?.running_ms ?? b.runningMs)}`),
    h('p', {}, b.message),
    h('p', {}, 'Spawned at ', h('code', {}, b.location), ' · ', link(`#/tasks?id=${b.taskId}&task=${b.taskId}`, 'task details')),
    stack
      ? [h('h4', {}, 'Last parked at, before the blocking poll'), renderStack(stack)]
      : null,
    h(
      'p',
      { class: 'muted' },
      'The blocking line runs inside the poll, where await points are not recorded: ',
      ctx.offline ? 'a CPU profile of the live app shows it.' : link('#/cpu?seconds=2&start=1', 'profile CPU for 2 s'),
      ctx.offline ? null : ' to see it (the flamegraph roots are threads, then the spawn site of the task being polled).',
    ),
  );
}

export function render(el, data, ctx) {
  const index = indexFindings(data.findings);
  const blocked = blockedWorkers(data.findings);
  const stalled = blocked.length ? stalledWorkers(ctx.previous?.workers, data.workers, ctx.sincePrevious) : new Set();
  const before = new Map((ctx.previous?.workers ?? []).map((w) => [w.index, w]));
  const delta = (w, k) => {
    const p = before.get(w.index);
    return p && p[k] != null && w[k] != null ? `+${count(w[k] - p[k])}` : '–';
  };
  fill(
    el,
    data.workers.length
      ? null
      : note('info', 'No worker metrics: the agent was not given the runtime (it is when started by #[taskscope::main] or instrument()).'),
    blocked.length
      ? [
          note('warn', `${blocked.length} of ${data.workers.length} worker${data.workers.length === 1 ? '' : 's'} blocked by a task that does not yield.`),
          h('ul', { class: 'cards blocked-list' }, blocked.map((b) => card(b, data, ctx))),
        ]
      : note('info', 'No blocked worker: every poll returned within the threshold (TASKSCOPE_BLOCKED_AFTER, 100 ms by default).'),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'workers' },
        h('thead', {}, h('tr', {}, ['Worker', 'Status', 'Polls', 'Polls since last refresh', 'Parks', 'Busy', 'Steals', 'Local queue'].map((c) => h('th', { scope: 'col' }, c)))),
        h(
          'tbody',
          {},
          data.workers.map((w) =>
            h(
              'tr',
              { class: stalled.has(w.index) ? 'sev-warning' : '', 'data-worker': w.index },
              h('td', { class: 'num' }, String(w.index)),
              h(
                'td',
                {},
                stalled.has(w.index)
                  ? h('span', { class: 'badge sev-warning', title: 'no poll started and no park since the last refresh, while a task blocks a worker' }, 'likely blocked')
                  : 'ok',
              ),
              h('td', { class: 'num' }, count(w.polls)),
              h('td', { class: 'num' }, delta(w, 'polls')),
              h('td', { class: 'num' }, count(w.parks)),
              h('td', { class: 'num' }, duration(w.busy_ms)),
              h('td', { class: 'num' }, count(w.steals)),
              h('td', { class: 'num' }, count(w.local_queue)),
            ),
          ),
        ),
      ),
    ),
    h('h3', {}, 'Running tasks'),
    data.tasks.length
      ? h(
          'table',
          { class: 'running' },
          h('thead', {}, h('tr', {}, ['Task', 'Problems', 'Running for', 'Polls', 'Spawned at'].map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            {},
            data.tasks.map((t) => {
              const badges = taskBadges(t, index);
              return h(
                'tr',
                { class: badges.length ? `sev-${badges[0].severity}` : '' },
                h('td', { class: 'num' }, link(`#/tasks?id=${t.id}&task=${t.id}`, String(t.id))),
                h('td', { class: 'badges' }, badges.map(badge)),
                h('td', { class: 'num' }, duration(t.running_ms)),
                h('td', { class: 'num' }, count(t.polls)),
                h('td', {}, h('code', {}, t.spawned_at)),
              );
            }),
          ),
        )
      : h('p', { class: 'muted' }, 'No task is inside a poll right now.'),
  );
}
