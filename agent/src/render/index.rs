//! The HTML index of `/debug/pprof/`, shaped like Go's.

use std::fmt::Write;

use crate::snapshot::Snapshot;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One row of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Profile {
    pub(crate) name: &'static str,
    /// What the profile counts now; `None` for profiles taken on request.
    pub(crate) count: Option<usize>,
    /// The link, relative to `/debug/pprof/`.
    pub(crate) href: &'static str,
    pub(crate) description: &'static str,
}

const HEAP: &str = "A sampling of memory allocations of live objects: estimated in-use bytes and objects \
     per stack, labelled with the spawn site of the task that allocated. seconds=N gives the change \
     over the next N seconds.";
const ALLOCS: &str = "A sampling of all past memory allocations: the heap profile shown by allocated \
     space by default. seconds=N gives what was allocated over the next N seconds.";
const HEAP_FLAMEGRAPH: &str = "In-use heap flamegraph (an interactive SVG). sample=inuse_objects, \
     alloc_space or alloc_objects for the others; seconds=N for the change over N seconds.";
/// What heap, allocs and heap/flamegraph say without taskscope's allocator.
const HEAP_OFF: &str = crate::heap::HOW_TO_ENABLE;

/// The profiles the index lists, in Go's (alphabetical) order.
pub(crate) fn profiles(snapshot: &Snapshot) -> Vec<Profile> {
    let live = Some(snapshot.tasks_total);
    let heap = &snapshot.heap;
    let stacks = Some(heap.sampler.stacks as usize);
    let (heap_text, allocs_text, heap_svg_text) =
        if heap.enabled { (HEAP, ALLOCS, HEAP_FLAMEGRAPH) } else { (HEAP_OFF, HEAP_OFF, HEAP_OFF) };
    let p = |name, count, href, description| Profile { name, count, href, description };
    vec![
        p("allocs", stacks, "allocs?debug=1", allocs_text),
        p(
            "block",
            Some(0),
            "block?debug=1",
            "Empty for now: taskscope does not record blocking on synchronization yet. \
             Served so that scrape jobs configured for Go succeed.",
        ),
        p(
            "flamegraph",
            None,
            "flamegraph?seconds=30",
            "CPU flamegraph (an interactive SVG) of the next seconds (default 30). \
             Also: width (pixels), minwidth (percent), reverse=1 (stack-reversed), icicle=1 (top-down).",
        ),
        p(
            "goroutine",
            live,
            "goroutine?debug=1",
            "Live tokio tasks (an alias of tasks, for tools configured for Go).",
        ),
        p("heap", stacks, "heap?debug=1", heap_text),
        p("heap/flamegraph", None, "heap/flamegraph", heap_svg_text),
        p(
            "mutex",
            Some(0),
            "mutex?debug=1",
            "Empty for now: taskscope does not record mutex contention yet. \
             Served so that scrape jobs configured for Go succeed.",
        ),
        p(
            "profile",
            None,
            "profile?seconds=30",
            "CPU profile. You can specify the duration in the seconds GET parameter (default 30). \
             After you get the profile file, use the go tool pprof command to investigate the profile.",
        ),
        p(
            "tasks",
            live,
            "tasks?debug=1",
            "Live tokio tasks: state, idle or running time, polls and spawn site. \
             debug=1 groups them by spawn site; debug=2 lists every task.",
        ),
    ]
}

pub(crate) fn page(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    out.push_str(
        "<html>\n<head>\n<title>/debug/pprof/</title>\n<style>\n\
         .profile-name{display:inline-block; width:6rem;}\n\
         .problem{color:#a00; font-weight:bold;}\n</style>\n</head>\n<body>\n\
         /debug/pprof/\n<br>\n",
    );
    if let Some(problem) = snapshot.agent.problem {
        let _ = writeln!(out, "<p class=problem>Task tracking is off: {}</p>", escape(problem));
    }
    findings(&mut out, snapshot);
    if snapshot.agent.dropped.tasks > 0 {
        let _ = writeln!(
            out,
            "<p class=problem>{} spawns were not tracked: the task table is full \
             (raise TASKSCOPE_MAX_TASKS, now {}).</p>",
            snapshot.agent.dropped.tasks, snapshot.agent.max_tasks
        );
    }
    out.push_str(
        "<p>Set debug=1 as a query parameter to export in legacy text format</p>\n<br>\n\
         Types of profiles available:\n<table>\n<thead><td>Count</td><td>Profile</td></thead>\n",
    );
    for p in profiles(snapshot) {
        let count = p.count.map(|n| n.to_string()).unwrap_or_default();
        let _ = writeln!(out, "<tr><td>{count}</td><td><a href='{}'>{}</a></td></tr>", p.href, p.name);
    }
    out.push_str(
        "</table>\n<a href='tasks?debug=2'>full task dump</a>\n<br>\n\
         <a href='/debug/taskscope/api/snapshot'>snapshot (JSON)</a>\n<br>\n\
         <p>\nProfile Descriptions:\n<ul>\n",
    );
    for p in profiles(snapshot) {
        let _ =
            writeln!(out, "<li><div class=profile-name>{}: </div> {}</li>", p.name, escape(p.description));
    }
    out.push_str("</ul>\n</p>\n</body>\n</html>\n");
    out
}

/// At most this many findings are listed on the index; the text page has all.
const FINDINGS_LISTED: usize = 20;

/// The findings, most severe first, one line each: severity, kind, location
/// and message; or a plain "no findings".
fn findings(out: &mut String, snapshot: &Snapshot) {
    use crate::detect::Severity;
    if snapshot.findings.is_empty() {
        out.push_str("<p class=findings>No findings.</p>\n");
        return;
    }
    let _ = writeln!(
        out,
        "<p class=findings>Findings (<a href='/debug/taskscope/findings'>all, as text</a>):</p>\n<ul class=findings>"
    );
    for f in snapshot.findings.iter().take(FINDINGS_LISTED) {
        let color = match f.severity {
            Severity::Critical => "#a00",
            Severity::Warning => "#a60",
            Severity::Info => "#555",
        };
        let _ = writeln!(
            out,
            "<li><b style='color:{color}'>{}</b> {} at <code>{}</code>: {}</li>",
            f.severity.as_str(),
            f.kind.as_str(),
            escape(&f.location),
            escape(&f.message)
        );
    }
    let more = snapshot.findings.len().saturating_sub(FINDINGS_LISTED);
    if more > 0 {
        let _ = writeln!(out, "<li>and {more} more</li>");
    }
    out.push_str("</ul>\n");
}

#[cfg(test)]
mod findings_tests {
    use super::*;
    use crate::detect::{Finding, Kind, Severity};
    use crate::snapshot::fixture;

    fn finding(severity: Severity, kind: Kind, location: &str, message: &str) -> Finding {
        Finding {
            kind,
            severity,
            location: location.to_string(),
            task_ids: vec![42],
            since_ms: 1,
            message: message.to_string(),
            evidence: serde_json::Value::Null,
        }
    }

    #[test]
    fn the_index_lists_findings_with_severity_kind_location_and_message() {
        let mut s = fixture();
        s.findings = vec![
            finding(Severity::Critical, Kind::LostWaker, "src/a.rs:1:1", "nothing can wake <it>"),
            finding(Severity::Warning, Kind::StuckTask, "src/b.rs:2:2", "waited on chan receive"),
        ];
        let html = page(&s);
        assert!(html.contains("Findings ("), "{html}");
        assert!(
            html.contains(
                "critical</b> lost_waker at <code>src/a.rs:1:1</code>: nothing can wake &lt;it&gt;</li>"
            ),
            "{html}"
        );
        let critical = html.find("lost_waker").unwrap();
        assert!(critical < html.find("stuck_task").unwrap(), "in the order given");
        assert!(!html.contains("No findings"), "{html}");
    }

    #[test]
    fn a_clean_snapshot_says_no_findings_and_long_lists_are_cut() {
        let mut s = fixture();
        assert!(page(&s).contains("<p class=findings>No findings.</p>"));
        s.findings = (0..25)
            .map(|i| finding(Severity::Info, Kind::StuckTask, &format!("src/{i}.rs:1:1"), "idle"))
            .collect();
        let html = page(&s);
        assert_eq!(html.matches("stuck_task at").count(), FINDINGS_LISTED);
        assert!(html.contains("<li>and 5 more</li>"), "{html}");
    }
}
