// The offline task selection must match the agent's (render/json.rs).
import test from 'node:test';
import assert from 'node:assert/strict';

import { applyQuery, countTasks, fromParams, toParams } from '../query.js';

const t = (id, state, site, idle_ms, polls, wait) => ({ id, state, site, idle_ms, running_ms: state === 'running' ? 5 : 0, age_ms: 100 + id, polls, busy_ms: 0, wait });
const snapshot = {
  tasks: [t(42, 'idle', 1, 300, 3, 'chan receive'), t(7, 'running', 2, 0, 120, null), t(43, 'idle', 1, 298, 1, 'chan receive'), t(9, 'idle', 2, 12, 15, 'sleep')],
  tasks_total: 4,
  sites: [],
};
const ids = (s) => s.tasks.map((x) => x.id);

test('sorting defaults: ascending ids, otherwise descending', () => {
  assert.deepEqual(ids(applyQuery(snapshot, {})), [7, 9, 42, 43]);
  assert.deepEqual(ids(applyQuery(snapshot, { sort: 'idle' })), [42, 43, 9, 7]);
  assert.deepEqual(ids(applyQuery(snapshot, { sort: 'polls', order: 'asc' })), [43, 42, 9, 7]);
});

test('filters, then pages, and counts what matched', () => {
  const s = applyQuery(snapshot, { site: '1', sort: 'idle', limit: '1', offset: '1' });
  assert.deepEqual([ids(s), s.tasks_total], [[43], 2]);
  assert.deepEqual(ids(applyQuery(snapshot, { wait: 'none' })), [7]);
  assert.deepEqual(ids(applyQuery(snapshot, { state: 'idle', wait: 'sleep' })), [9]);
  assert.deepEqual(ids(applyQuery(snapshot, { id: '43, 9,1000' })), [9, 43]);
  assert.deepEqual(applyQuery(snapshot, { limit: '0' }).tasks, []);
  // Idle at least 298 ms (running tasks never match), polls in a range.
  assert.deepEqual(ids(applyQuery(snapshot, { min_idle: '298' })), [42, 43]);
  assert.deepEqual(ids(applyQuery(snapshot, { min_idle: '0' })), [9, 42, 43]);
  assert.deepEqual(ids(applyQuery(snapshot, { min_polls: '2', max_polls: '15' })), [9, 42]);
  assert.deepEqual(applyQuery(snapshot, { limit: '0' }).task_counts, countTasks(snapshot.tasks));
});

test('bad sorts are refused like the agent refuses them', () => {
  assert.throws(() => applyQuery(snapshot, { sort: 'colour' }), /invalid sort="colour"/);
  assert.throws(() => applyQuery(snapshot, { order: 'up' }), /asc or desc/);
});

test('counts by state and wait reason', () => {
  assert.deepEqual(countTasks(snapshot.tasks), { total: 4, idle: 3, running: 1, by_wait: { 'chan receive': 2, sleep: 1 } });
});

test('queries round-trip through URL parameters, without empty values', () => {
  const q = { sort: 'idle', state: 'idle', wait: 'chan receive', site: '', id: '1,2' };
  const params = toParams(q);
  assert.equal(params.toString(), 'sort=idle&state=idle&wait=chan+receive&id=1%2C2');
  assert.deepEqual(fromParams(params), { sort: 'idle', state: 'idle', wait: 'chan receive', id: '1,2' });
});
