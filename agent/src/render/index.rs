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

/// The profiles the index lists, in Go's (alphabetical) order.
pub(crate) fn profiles(snapshot: &Snapshot) -> Vec<Profile> {
    let live = Some(snapshot.tasks_total);
    let p = |name, count, href, description| Profile { name, count, href, description };
    vec![
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
