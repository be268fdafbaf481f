// The highlighting rules of the viewer, on findings shaped like the agent's.
import test from 'node:test';
import assert from 'node:assert/strict';

import {
  blockedWorkers,
  covers,
  heapGrowth,
  indexFindings,
  rankSites,
  severityOf,
  siteStatus,
  stalledWorkers,
  summarize,
  taskBadges,
} from '../highlight.js';

const SITE = 'src/main.rs:39:5';

const stuck = {
  kind: 'stuck_task',
  severity: 'warning',
  location: SITE,
  task_ids: [12],
  since_ms: 70_000,
  message: '1 task spawned at src/main.rs:39:5 has waited on chan receive for 1 minute (threshold 2 s)',
  evidence: { wait: 'chan receive', tasks: 1, threshold_ms: 2_000 },
};

const leak = {
  kind: 'leaking_spawn_site',
  severity: 'warning',
  location: 'src/main.rs:48:5',
  task_ids: [16, 17],
  since_ms: 20_000,
  message: 'live tasks spawned at src/main.rs:48:5 rose from 3 to 40',
  evidence: { window_s: 20, growth: 30, rate_per_s: 1.9, rate_per_min: 114, floors: [3, 12, 22, 33] },
};

const task = (over) => ({
  id: 99,
  state: 'idle',
  spawned_at: SITE,
  site: 5,
  polls: 1,
  idle_ms: 10_000,
  running_ms: 0,
  wait: 'chan receive',
  wakers: 1,
  woken: false,
  ...over,
});

test('a task a finding lists is badged, whatever its numbers', () => {
  const index = indexFindings([stuck]);
  const badges = taskBadges(task({ id: 12, idle_ms: 0 }), index);
  assert.deepEqual(
    badges.map((b) => [b.kind, b.label, b.severity]),
    [['stuck_task', 'stuck', 'warning']],
  );
  assert.equal(badges[0].title, stuck.message);
  assert.equal(severityOf(badges), 'warning');
});

test('a task beyond the 100 listed ids is badged by the finding\'s rule', () => {
  const index = indexFindings([stuck]);
  assert.equal(taskBadges(task(), index)[0].label, 'stuck');
  // Not past the threshold, another wait, another site, running, or woken: no badge.
  for (const other of [
    task({ idle_ms: 1_999 }),
    task({ wait: 'sleep' }),
    task({ spawned_at: 'src/other.rs:1:1' }),
    task({ state: 'running', idle_ms: 0, running_ms: 50_000 }),
    task({ woken: true }),
  ]) {
    assert.deepEqual(taskBadges(other, index), [], JSON.stringify(other));
  }
});

test('lean mode: stuck findings without a wait reason match tasks without one and read "idle long"', () => {
  const lean = { ...stuck, severity: 'info', evidence: { wait: null, threshold_ms: 2_000 } };
  const index = indexFindings([lean]);
  const badges = taskBadges(task({ wait: null, wakers: null, woken: null }), index);
  assert.deepEqual(badges.map((b) => [b.label, b.severity]), [['idle long', 'info']]);
  assert.equal(severityOf(badges), 'info');
});

test('lost wakers are matched on their waker counts and outrank the rest', () => {
  const lost = {
    kind: 'lost_waker',
    severity: 'critical',
    location: SITE,
    task_ids: [1],
    message: 'nothing can ever wake it',
    evidence: { wait: 'no waker', grace_ms: 1_000 },
  };
  const index = indexFindings([stuck, lost, { ...leak, location: SITE }]);
  const t = task({ wait: 'no waker', wakers: 0, woken: false });
  assert.deepEqual(taskBadges(t, index).map((b) => b.label), ['lost waker', 'leaking site']);
  assert.equal(covers(lost, task({ wait: 'no waker', wakers: 1 })), false);
  assert.equal(covers(lost, task({ wait: 'no waker', wakers: 0, polls: 0 })), false);
});

test('every task of a leaking site is badged, one badge per kind', () => {
  const index = indexFindings([leak]);
  const t = task({ id: 16, spawned_at: leak.location, wait: 'chan receive' });
  assert.deepEqual(taskBadges(t, index).map((b) => b.label), ['leaking site']);
  assert.deepEqual(taskBadges(task({ id: 500, spawned_at: leak.location }), index).map((b) => b.label), ['leaking site']);
});

test('a blocked worker badges only the task it names', () => {
  const blocked = {
    kind: 'blocked_worker',
    severity: 'warning',
    location: SITE,
    task_ids: [7],
    since_ms: 3_000,
    message: 'task 7 ... blocking its worker thread',
    evidence: { task_id: 7, running_ms: 3_000 },
  };
  const index = indexFindings([blocked]);
  assert.deepEqual(taskBadges(task({ id: 7, state: 'running' }), index).map((b) => b.label), ['blocking worker']);
  assert.deepEqual(taskBadges(task({ id: 8, state: 'running' }), index), []);
  assert.deepEqual(blockedWorkers([blocked, stuck]), [
    { taskId: 7, runningMs: 3_000, location: SITE, message: blocked.message },
  ]);
});

test('a leaking site carries its growth rate; sites with problems come first', () => {
  const index = indexFindings([leak, stuck]);
  const leaking = { id: 9, location: leak.location, live: 40 };
  const status = siteStatus(leaking, index);
  assert.deepEqual(status.badges.map((b) => b.label), ['leaking site']);
  assert.deepEqual(
    [status.leak.perSecond, status.leak.perMinute, status.leak.growth, status.leak.windowSeconds],
    [1.9, 114, 30, 20],
  );
  const pool = { id: 1, location: 'src/pool.rs:1:1', live: 400 };
  const stuckSite = { id: 5, location: SITE, live: 1 };
  assert.equal(siteStatus(pool, index).leak, null);
  assert.deepEqual(rankSites([pool, stuckSite, leaking], index).map((s) => s.id), [9, 5, 1]);
});

test('workers without progress between snapshots are the stalled ones', () => {
  const before = [
    { index: 0, polls: 10, parks: 5 },
    { index: 1, polls: 10, parks: 5 },
  ];
  const after = [
    { index: 0, polls: 10, parks: 5 },
    { index: 1, polls: 30, parks: 9 },
  ];
  assert.deepEqual([...stalledWorkers(before, after, 2_000)], [0]);
  assert.deepEqual([...stalledWorkers(before, after, 200)], [], 'too short a gap says nothing');
  assert.deepEqual([...stalledWorkers(null, after, 2_000)], []);
});

test('heap growth comes from the heap section and from heap_growth findings', () => {
  const heap = { growth: [{ location: 'src/cache.rs:9', rate_bytes_per_sec: 1024, window_ms: 60_000, first_bytes: 1, last_bytes: 2 }] };
  const finding = { kind: 'heap_growth', location: 'src/buf.rs:3', since_ms: 30_000, evidence: { rate_bytes_per_sec: 10 } };
  const growth = heapGrowth(heap, [finding]);
  assert.deepEqual([...growth.keys()], ['src/cache.rs:9', 'src/buf.rs:3']);
  assert.equal(growth.get('src/buf.rs:3').perSecond, 10);
  assert.equal(heapGrowth(undefined, []).size, 0);
});

test('the overview counts findings by severity and the agent\'s drops', () => {
  const s = summarize({
    task_counts: { total: 3, idle: 2, running: 1, by_wait: {} },
    findings: [stuck, leak, { ...stuck, severity: 'critical', kind: 'lost_waker' }],
    workers: [{ index: 0 }, { index: 1 }],
    heap: { enabled: true, totals: { inuse_bytes: 2048 }, sampler: { dropped_reentrant: 2, dropped_live_table_full: 1, samples: 50 } },
    agent: { dropped: { tasks: 4, sites_overflowed: 1 }, panics: 0 },
  });
  assert.deepEqual(s.findings, { critical: 1, warning: 2, info: 0 });
  assert.deepEqual(s.workers, { total: 2, blocked: 0 });
  assert.deepEqual(s.heap, { inuse: 2048 });
  assert.deepEqual(s.dropped, { tasks: 4, sites: 1, heapSamples: 3, panics: 0 });
  assert.equal(summarize({ heap: { enabled: false } }).heap, null);
});
