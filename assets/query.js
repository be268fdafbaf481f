// The task selection of `api/snapshot` (`sort`, `order`, `offset`, `limit`,
// `state`, `site`, `wait`, `id`, `min_idle`, `min_polls`, `max_polls`): as
// URL parameters for a live agent, and
// applied here, the same way the agent does, to a saved snapshot.

/** Sort keys and the task field each one orders by. */
export const SORT_KEYS = {
  id: 'id',
  idle: 'idle_ms',
  running: 'running_ms',
  age: 'age_ms',
  polls: 'polls',
  busy: 'busy_ms',
};

const NAMES = ['sort', 'order', 'offset', 'limit', 'state', 'site', 'wait', 'id', 'min_idle', 'min_polls', 'max_polls'];

/** The URL parameters of a query; empty values are left out. */
export function toParams(query) {
  const params = new URLSearchParams();
  for (const name of NAMES) {
    const v = query[name];
    if (v != null && v !== '') params.set(name, String(v));
  }
  return params;
}

/** A query from URL parameters (the viewer keeps it in the hash). */
export function fromParams(params) {
  const query = {};
  for (const name of NAMES) {
    const v = params.get(name);
    if (v != null && v !== '') query[name] = v;
  }
  return query;
}

/** Live tasks by state and wait reason, as the agent counts them. */
export function countTasks(tasks) {
  const counts = { total: tasks.length, idle: 0, running: 0, by_wait: {} };
  for (const t of tasks) {
    if (t.state === 'running') counts.running += 1;
    else counts.idle += 1;
    if (t.wait) counts.by_wait[t.wait] = (counts.by_wait[t.wait] ?? 0) + 1;
  }
  return counts;
}

/**
 * Applies `query` to a saved snapshot: a new snapshot whose `tasks` are the
 * selected page, whose `tasks_total` counts the tasks that matched, and whose
 * `task_counts` cover every task of the file. Errors in the query throw, as
 * the agent answers 400.
 */
export function applyQuery(snapshot, query) {
  const all = snapshot.tasks ?? [];
  const sort = query.sort || 'id';
  const field = SORT_KEYS[sort];
  if (!field) throw new Error(`invalid sort=${JSON.stringify(sort)}: want one of ${Object.keys(SORT_KEYS).join(', ')}`);
  const order = query.order || (sort === 'id' ? 'asc' : 'desc');
  if (order !== 'asc' && order !== 'desc') throw new Error(`invalid order=${JSON.stringify(order)}: want asc or desc`);
  const ids = query.id ? new Set(String(query.id).split(',').map((s) => Number(s.trim()))) : null;
  const number = (v) => (v != null && v !== '' ? Number(v) : null);
  const site = number(query.site);
  const minIdle = number(query.min_idle);
  const minPolls = number(query.min_polls);
  const maxPolls = number(query.max_polls);
  const matched = all.filter(
    (t) =>
      (!query.state || t.state === query.state) &&
      (site == null || t.site === site) &&
      (!query.wait || (t.wait ?? 'none') === query.wait) &&
      (!ids || ids.has(t.id)) &&
      (minIdle == null || (t.state === 'idle' && t.idle_ms >= minIdle)) &&
      (minPolls == null || t.polls >= minPolls) &&
      (maxPolls == null || t.polls <= maxPolls),
  );
  const sign = order === 'desc' ? -1 : 1;
  matched.sort((a, b) => sign * ((a[field] - b[field]) || (a.id - b.id)));
  const offset = Number(query.offset ?? 0);
  const limit = query.limit != null && query.limit !== '' ? Number(query.limit) : matched.length;
  return {
    ...snapshot,
    tasks: matched.slice(offset, offset + limit),
    tasks_total: matched.length,
    task_counts: snapshot.task_counts ?? countTasks(all),
  };
}
