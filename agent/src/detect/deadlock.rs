//! `deadlock`: tasks that wait on each other's locks in a cycle.
//!
//! Deep mode records which task holds each tokio `Mutex` (and which tasks
//! hold each `RwLock`) and which resource each idle task waits on. Task A
//! waiting on a lock held by task B is an edge A → B of the wait-for graph;
//! a cycle of idle tasks (A → B → … → A) can never make progress, because
//! each waits for a release that only the next one can make: `critical`.
//! A task waiting on a lock it holds itself is a cycle of one.
//!
//! A contended lock is not a deadlock: its holder is running, or waits on
//! something outside the cycle. Only tasks idle for [`GRACE_MS`] and not
//! woken count, so that a snapshot taken while a lock changes hands does
//! not read as a cycle. Barriers have no holders, so cycles through them
//! are not seen.
//!
//! A task waiting on a `Semaphore` needs any one of its holders to give
//! permits back, so it is an edge only when every holder is known and
//! blocked (none counted without its id, none outside the runtime): each
//! then leads to a cycle or to a task that cannot move either. Permits
//! taken with `try_acquire` are not seen by tokio's instrumentation, so a
//! holder taskscope cannot see could still free such a waiter.

use std::collections::{BTreeSet, HashMap};

use serde_json::json;

use super::{lasted, Finding, Kind, Severity};
use crate::deep::resources::Resource;
use crate::snapshot::{Snapshot, State, Task};

/// How long every task of a cycle must have been idle.
pub(super) const GRACE_MS: u64 = 1_000;
/// Cycles reported at most, and steps of the search at most.
const MAX_CYCLES: usize = 20;
const MAX_STEPS: usize = 100_000;
/// The longest cycle looked for.
const MAX_LEN: usize = 32;

fn blocked(task: &Task) -> bool {
    task.state == State::Idle && task.idle_ms >= GRACE_MS && task.woken != Some(true)
}

/// One critical finding per cycle.
pub(super) fn detect(snapshot: &Snapshot) -> Vec<Finding> {
    let resources = &snapshot.resources;
    if resources.list.is_empty() {
        return Vec::new();
    }
    let tasks: HashMap<u64, &Task> = snapshot.tasks.iter().map(|t| (t.id, t)).collect();
    let waits = resources.wait_index();
    // Edges: a blocked task → the blocked holders of what it waits on.
    let mut edges: HashMap<u64, (&Resource, Vec<u64>)> = HashMap::new();
    for (&task, &resource) in &waits {
        if !tasks.get(&task).is_some_and(|t| blocked(t)) {
            continue;
        }
        let stuck = |h: &u64| tasks.get(h).is_some_and(|t| blocked(t)) && waits.contains_key(h);
        if resource.kind == crate::deep::resources::Kind::Semaphore
            && (resource.held_outside || resource.more_permits > 0 || !resource.held_by.iter().all(stuck))
        {
            continue;
        }
        let next: Vec<u64> = resource.held_by.iter().copied().filter(stuck).collect();
        if !next.is_empty() {
            edges.insert(task, (resource, next));
        }
    }
    cycles(&edges).into_iter().map(|cycle| finding(snapshot, &tasks, &edges, &cycle)).collect()
}

/// The elementary cycles of the graph, each starting at its smallest task
/// id, in order of that id.
fn cycles(edges: &HashMap<u64, (&Resource, Vec<u64>)>) -> Vec<Vec<u64>> {
    let starts: BTreeSet<u64> = edges.keys().copied().collect();
    let mut found = Vec::new();
    let mut steps = 0usize;
    for &start in &starts {
        let mut path = vec![start];
        // Each frame: the node's successors still to try.
        let mut stack: Vec<std::vec::IntoIter<u64>> = vec![successors(edges, start)];
        while let Some(next) = stack.last_mut().map(Iterator::next) {
            steps += 1;
            if steps > MAX_STEPS || found.len() >= MAX_CYCLES {
                return found;
            }
            match next {
                None => {
                    stack.pop();
                    path.pop();
                }
                Some(n) if n == start => found.push(path.clone()),
                // Only nodes above the start: each cycle is found once, from
                // its smallest node.
                Some(n) if n < start || path.contains(&n) || path.len() >= MAX_LEN => {}
                Some(n) => {
                    path.push(n);
                    stack.push(successors(edges, n));
                }
            }
        }
    }
    found
}

fn successors(edges: &HashMap<u64, (&Resource, Vec<u64>)>, task: u64) -> std::vec::IntoIter<u64> {
    edges.get(&task).map(|(_, next)| next.clone()).unwrap_or_default().into_iter()
}

fn resource_json(r: &Resource) -> serde_json::Value {
    json!({"id": r.id, "type": r.kind.type_name(), "created_at": r.created_at})
}

fn finding(
    snapshot: &Snapshot,
    tasks: &HashMap<u64, &Task>,
    edges: &HashMap<u64, (&Resource, Vec<u64>)>,
    cycle: &[u64],
) -> Finding {
    let n = cycle.len();
    let waits_for = |i: usize| edges[&cycle[i]].0;
    let spawned_at = |task: u64| tasks.get(&task).map_or("<unknown>", |t| snapshot.location(t.site));
    let since_ms = cycle.iter().filter_map(|t| tasks.get(t)).map(|t| t.idle_ms).min().unwrap_or(0);
    let mut sentences = Vec::new();
    let mut steps = Vec::new();
    for i in 0..n {
        let task = cycle[i];
        let next = cycle[(i + 1) % n];
        let wanted = waits_for(i);
        // What it holds that the previous task of the cycle waits for.
        let held = waits_for((i + n - 1) % n);
        let sentence = if n == 1 {
            format!(
                "task {task} (spawned at {}) holds {} and waits to lock it again",
                spawned_at(task),
                wanted.describe()
            )
        } else if i == 0 {
            format!(
                "task {task} (spawned at {}) holds {} and waits for {}, held by task {next}",
                spawned_at(task),
                held.describe(),
                wanted.describe()
            )
        } else {
            format!(
                "task {task} (spawned at {}) waits for {}, held by task {next}",
                spawned_at(task),
                if next == cycle[0] {
                    format!("the {} created at {}", wanted.kind.as_str(), wanted.created_at)
                } else {
                    wanted.describe()
                },
            )
        };
        sentences.push(sentence);
        steps.push(json!({
            "task": task,
            "spawned_at": spawned_at(task),
            "idle_ms": tasks.get(&task).map_or(0, |t| t.idle_ms),
            "holds": resource_json(held),
            "waits_for": resource_json(wanted),
            "held_by": next,
        }));
    }
    let first = tasks.get(&cycle[0]);
    Finding {
        kind: Kind::Deadlock,
        severity: Severity::Critical,
        location: first.map_or("<unknown>", |t| snapshot.location(t.site)).to_string(),
        task_ids: cycle.to_vec(),
        since_ms,
        message: format!(
            "{} tasks wait on each other's locks in a cycle: {}; none of them can proceed (all idle for at least {})",
            n,
            sentences.join("; "),
            lasted(since_ms)
        )
        .replacen("1 tasks wait on each other's locks in a cycle", "a task waits on a lock it holds", 1),
        evidence: json!({
            "cycle": steps,
            "tasks": n,
            "grace_ms": GRACE_MS,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::synthetic::Builder;
    use super::*;
    use crate::deep::resources::{Kind as ResKind, Resources};

    fn mutex(id: u64, line: u32, holder: Option<u64>, waiters: &[u64]) -> Resource {
        Resource {
            id,
            kind: ResKind::Mutex,
            created_at: format!("src/main.rs:{line}:17"),
            held_by: holder.into_iter().collect(),
            held_permits: Vec::new(),
            held_outside: false,
            more_holders: 0,
            more_permits: 0,
            waiters: waiters.to_vec(),
        }
    }

    fn with(mut snapshot: Snapshot, list: Vec<Resource>) -> Snapshot {
        let waits = list.iter().flat_map(|r| r.waiters.iter().map(move |&t| (t, r.id))).collect();
        snapshot.resources = Resources { tracked: true, list, waits, ..Resources::default() };
        snapshot
    }

    #[test]
    fn two_tasks_each_waiting_for_the_others_lock_are_a_deadlock() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:20:5");
        let a = s.idle(site, 5_000, "mutex lock");
        let b = s.idle(site, 4_000, "mutex lock");
        let snapshot = with(s.build(), vec![mutex(100, 10, Some(a), &[b]), mutex(101, 11, Some(b), &[a])]);
        let found = detect(&snapshot);
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!(
            (f.kind, f.severity, f.task_ids.as_slice(), f.since_ms),
            (Kind::Deadlock, Severity::Critical, &[a, b][..], 4_000)
        );
        assert_eq!(
            f.message,
            format!(
                "2 tasks wait on each other's locks in a cycle: task {a} (spawned at src/main.rs:20:5) holds \
                 tokio::sync::Mutex created at src/main.rs:10:17 and waits for tokio::sync::Mutex created at \
                 src/main.rs:11:17, held by task {b}; task {b} (spawned at src/main.rs:20:5) waits for the Mutex \
                 created at src/main.rs:10:17, held by task {a}; none of them can proceed (all idle for at least 4 seconds)"
            )
        );
        assert_eq!(f.evidence["cycle"][1]["holds"]["created_at"], "src/main.rs:11:17");
        assert_eq!(f.evidence["cycle"][1]["waits_for"]["created_at"], "src/main.rs:10:17");
        assert_eq!(f.evidence["cycle"][1]["held_by"], a);
    }

    #[test]
    fn a_three_task_cycle_names_every_task_and_lock() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:20:5");
        let ids: Vec<u64> = (0..3).map(|_| s.idle(site, 2_000, "mutex lock")).collect();
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        let snapshot = with(
            s.build(),
            vec![mutex(7, 1, Some(a), &[c]), mutex(8, 2, Some(b), &[a]), mutex(9, 3, Some(c), &[b])],
        );
        let found = detect(&snapshot);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].task_ids, [a, b, c]);
        for line in ["src/main.rs:1:17", "src/main.rs:2:17", "src/main.rs:3:17"] {
            assert!(found[0].message.contains(line), "{}", found[0].message);
        }
    }

    #[test]
    fn a_task_waiting_on_a_lock_it_holds_is_a_cycle_of_one() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:20:5");
        let a = s.idle(site, 2_000, "mutex lock");
        let found = detect(&with(s.build(), vec![mutex(7, 1, Some(a), &[a])]));
        assert_eq!(found.len(), 1);
        assert!(found[0].message.starts_with("a task waits on a lock it holds: "), "{}", found[0].message);
    }

    fn semaphore(id: u64, holders: &[(u64, u64)], waiters: &[u64]) -> Resource {
        Resource {
            kind: ResKind::Semaphore,
            held_by: holders.iter().map(|h| h.0).collect(),
            held_permits: holders.iter().map(|h| h.1).collect(),
            ..mutex(id, 30, None, waiters)
        }
    }

    #[test]
    fn a_semaphore_cycle_is_a_deadlock_only_when_every_holder_is_stuck() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:20:5");
        let a = s.idle(site, 5_000, "semaphore acquire");
        let b = s.idle(site, 5_000, "semaphore acquire");
        let c = s.running(site, 5);
        let snap = s.build();
        // A holds S1 and waits for S2, held by B, which waits for S1.
        let cycle = vec![semaphore(1, &[(a, 1)], &[b]), semaphore(2, &[(b, 1)], &[a])];
        let found = detect(&with(snap.clone(), cycle));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].task_ids, [a, b]);
        assert!(
            found[0].message.contains("tokio::sync::Semaphore created at src/main.rs:30:17"),
            "{}",
            found[0].message
        );
        // S2 also held by a running task, which may give its permit back.
        let found = detect(&with(
            snap.clone(),
            vec![semaphore(1, &[(a, 1)], &[b]), semaphore(2, &[(b, 1), (c, 1)], &[a])],
        ));
        assert!(found.is_empty(), "{found:#?}");
        // Or by tasks not listed by id.
        let mut s2 = semaphore(2, &[(b, 1)], &[a]);
        s2.more_permits = 3;
        assert!(detect(&with(snap, vec![semaphore(1, &[(a, 1)], &[b]), s2])).is_empty());
    }

    #[test]
    fn contention_is_not_a_deadlock() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:20:5");
        // The holder runs (or waits on something else); the others queue.
        let holder = s.running(site, 5);
        let sleeper = s.idle(site, 9_000, "sleep");
        let waiters: Vec<u64> = (0..3).map(|_| s.idle(site, 9_000, "mutex lock")).collect();
        let snapshot =
            with(s.build(), vec![mutex(1, 1, Some(holder), &waiters), mutex(2, 2, Some(sleeper), &[])]);
        assert!(detect(&snapshot).is_empty());
    }

    #[test]
    fn a_cycle_changing_hands_or_just_formed_is_not_reported() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:20:5");
        let a = s.idle(site, 5_000, "mutex lock");
        let b = s.idle(site, GRACE_MS - 1, "mutex lock");
        let c = s.idle(site, 5_000, "mutex lock");
        let d = s.idle(site, 5_000, "mutex lock");
        s.task(d).woken = Some(true);
        let snapshot = with(
            s.build(),
            vec![
                mutex(1, 1, Some(a), &[b]),
                mutex(2, 2, Some(b), &[a]),
                mutex(3, 3, Some(c), &[d]),
                mutex(4, 4, Some(d), &[c]),
            ],
        );
        assert!(detect(&snapshot).is_empty(), "{:#?}", detect(&snapshot));
    }

    #[test]
    fn overlapping_cycles_are_each_reported_once() {
        let mut s = Builder::deep();
        let site = s.site("src/main.rs:20:5");
        let ids: Vec<u64> = (0..3).map(|_| s.idle(site, 2_000, "rwlock")).collect();
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        // An RwLock read by b and c, which a waits to write; b and c wait on
        // a mutex a holds.
        let mut rw = mutex(1, 1, None, &[a]);
        rw.kind = ResKind::RwLock;
        rw.held_by = vec![b, c];
        let m = mutex(2, 2, Some(a), &[]);
        let mut snapshot = with(s.build(), vec![rw, m]);
        snapshot.resources.waits.extend([(b, 2), (c, 2)]);
        let found = detect(&snapshot);
        let cycles: Vec<_> = found.iter().map(|f| f.task_ids.clone()).collect();
        assert_eq!(cycles, [vec![a, b], vec![a, c]]);
    }
}
