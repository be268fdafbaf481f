// What the viewer highlights, decided from the findings of a snapshot. Pure
// (no DOM), so `node --test assets/tests/` covers it.
//
// A finding lists at most 100 of its tasks (`task_ids`), yet a page of the
// task table may show others it covers (a site with 5,000 stuck tasks). So
// a task matches a finding by id first, and otherwise by the detector's own
// rule: same spawn site, same wait reason, idle past the threshold.

/** Badge text and severity per finding kind; the text is what a reader sees, never colour alone. */
const LABELS = {
  lost_waker: 'lost waker',
  deadlock: 'deadlock',
  stuck_task: 'stuck',
  blocked_worker: 'blocking worker',
  leaking_spawn_site: 'leaking site',
  busy_self_wake: 'busy self-wake',
  heap_growth: 'heap growth',
};

const RANK = { critical: 3, warning: 2, info: 1 };

/** The badge a finding gives what it covers. */
export function badgeOf(finding) {
  let label = LABELS[finding.kind] ?? finding.kind.replaceAll('_', ' ');
  // Lean mode cannot tell a stuck task from a long sleep: say what is known.
  if (finding.kind === 'stuck_task' && finding.severity === 'info') label = 'idle long';
  return { kind: finding.kind, severity: finding.severity, label, title: finding.message };
}

function push(map, key, value) {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/** Findings by the task ids they list and by location. */
export function indexFindings(findings = []) {
  const byTask = new Map();
  const byLocation = new Map();
  for (const f of findings) {
    for (const id of f.task_ids ?? []) push(byTask, id, f);
    push(byLocation, f.location, f);
  }
  return { findings, byTask, byLocation };
}

const same = (a, b) => (a ?? null) === (b ?? null);

/** Whether `finding` covers `task` by its rule, for tasks it does not list. */
export function covers(finding, task) {
  if (finding.location !== task.spawned_at) return false;
  const e = finding.evidence ?? {};
  switch (finding.kind) {
    case 'stuck_task':
      return (
        task.state === 'idle' &&
        same(e.wait, task.wait) &&
        task.woken !== true &&
        task.idle_ms >= (e.threshold_ms ?? Infinity)
      );
    case 'lost_waker':
      return (
        task.state === 'idle' &&
        same(e.wait, task.wait) &&
        task.polls > 0 &&
        task.wakers != null &&
        task.wakers <= 0 &&
        task.woken === false &&
        task.idle_ms >= (e.grace_ms ?? 1000)
      );
    case 'leaking_spawn_site':
      // Every live task of a leaking site may be one that leaked.
      return true;
    default:
      // A blocked worker names its one task; the rest have no rule here.
      return false;
  }
}

/** Most severe first, one badge per kind. */
function sortBadges(badges) {
  const seen = new Set();
  return badges
    .sort((a, b) => RANK[b.severity] - RANK[a.severity])
    .filter((b) => !seen.has(b.kind) && seen.add(b.kind));
}

/** The badges of a task row, most severe first. */
export function taskBadges(task, index) {
  const listed = index.byTask.get(task.id) ?? [];
  const byRule = (index.byLocation.get(task.spawned_at) ?? []).filter(
    (f) => !listed.includes(f) && covers(f, task),
  );
  return sortBadges([...listed, ...byRule].map(badgeOf));
}

/** The CSS severity of a row: that of its worst badge, or `''`. */
export function severityOf(badges) {
  return badges.length ? badges[0].severity : '';
}

/**
 * A spawn site's badges and, when it leaks, how fast: the growth rate and
 * window from the `leaking_spawn_site` finding's evidence.
 */
export function siteStatus(site, index) {
  const findings = index.byLocation.get(site.location) ?? [];
  const leak = findings.find((f) => f.kind === 'leaking_spawn_site');
  const e = leak?.evidence ?? {};
  return {
    badges: sortBadges(findings.filter((f) => f.kind !== 'heap_growth').map(badgeOf)),
    leak: leak
      ? {
          perSecond: e.rate_per_s ?? null,
          perMinute: e.rate_per_min ?? null,
          growth: e.growth ?? null,
          windowSeconds: e.window_s ?? null,
          message: leak.message,
        }
      : null,
  };
}

/** Spawn sites, problems first (most severe, then fastest leak), then by live count. */
export function rankSites(sites, index) {
  const rank = (s) => {
    const st = siteStatus(s, index);
    return [st.badges.length ? RANK[st.badges[0].severity] : 0, st.leak?.perSecond ?? 0, s.live];
  };
  return sites
    .map((s) => ({ site: s, key: rank(s) }))
    .sort((a, b) => b.key[0] - a.key[0] || b.key[1] - a.key[1] || b.key[2] - a.key[2] || a.site.id - b.site.id)
    .map((x) => x.site);
}

/** One entry per `blocked_worker` finding: the task, for how long, where. */
export function blockedWorkers(findings = []) {
  return findings
    .filter((f) => f.kind === 'blocked_worker')
    .map((f) => ({
      taskId: f.evidence?.task_id ?? f.task_ids?.[0],
      runningMs: f.evidence?.running_ms ?? f.since_ms,
      location: f.location,
      message: f.message,
    }));
}

/**
 * Workers that made no progress (no poll started, no park) between two
 * snapshots `elapsedMs` apart. With a blocked-worker finding, those are the
 * likely blocked ones; alone, they may just be parked with nothing to do, so
 * the caller only uses this when findings say a worker is blocked.
 */
export function stalledWorkers(previous, current, elapsedMs, minMs = 1000) {
  if (!previous || elapsedMs < minMs) return new Set();
  const before = new Map(previous.map((w) => [w.index, w]));
  const stalled = new Set();
  for (const w of current) {
    const p = before.get(w.index);
    if (p && p.polls != null && w.polls === p.polls && w.parks === p.parks) stalled.add(w.index);
  }
  return stalled;
}

/** Growing allocation sites by location: the heap's own growth list and `heap_growth` findings. */
export function heapGrowth(heap, findings = []) {
  const growth = new Map();
  for (const g of heap?.growth ?? []) {
    growth.set(g.location, { perSecond: g.rate_bytes_per_sec, windowMs: g.window_ms, first: g.first_bytes, last: g.last_bytes });
  }
  for (const f of findings) {
    if (f.kind !== 'heap_growth' || growth.has(f.location)) continue;
    const e = f.evidence ?? {};
    growth.set(f.location, { perSecond: e.rate_bytes_per_sec ?? null, windowMs: e.window_ms ?? f.since_ms, first: e.first_bytes, last: e.last_bytes });
  }
  return growth;
}

/** The numbers of the overview. */
export function summarize(snapshot) {
  const findings = snapshot.findings ?? [];
  const severities = { critical: 0, warning: 0, info: 0 };
  for (const f of findings) severities[f.severity] = (severities[f.severity] ?? 0) + 1;
  const agent = snapshot.agent ?? {};
  const sampler = snapshot.heap?.sampler ?? {};
  const heapDropped = Object.entries(sampler)
    .filter(([k]) => k.startsWith('dropped_'))
    .reduce((n, [, v]) => n + (v ?? 0), 0);
  return {
    tasks: snapshot.task_counts ?? { total: snapshot.tasks_total ?? 0, idle: null, running: null, by_wait: {} },
    findings: severities,
    workers: { total: (snapshot.workers ?? []).length, blocked: blockedWorkers(findings).length },
    heap: snapshot.heap?.enabled ? { inuse: snapshot.heap.totals?.inuse_bytes ?? 0 } : null,
    dropped: {
      tasks: agent.dropped?.tasks ?? 0,
      sites: agent.dropped?.sites_overflowed ?? 0,
      heapSamples: heapDropped,
      panics: agent.panics ?? 0,
    },
  };
}
