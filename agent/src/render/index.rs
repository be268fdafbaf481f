//! The HTML index of `/debug/pprof/`, shaped like Go's.

use std::fmt::Write;

use crate::snapshot::Snapshot;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The profiles the index lists: name, count, description.
pub(crate) fn profiles(snapshot: &Snapshot) -> Vec<(&'static str, usize, &'static str)> {
    let live = snapshot.tasks_total;
    vec![
        ("goroutine", live, "Live tokio tasks (an alias of tasks, for tools configured for Go)."),
        (
            "tasks",
            live,
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
    for (name, count, _) in profiles(snapshot) {
        let _ = writeln!(out, "<tr><td>{count}</td><td><a href='{name}?debug=1'>{name}</a></td></tr>");
    }
    out.push_str(
        "</table>\n<a href='tasks?debug=2'>full task dump</a>\n<br>\n\
         <a href='/debug/taskscope/api/snapshot'>snapshot (JSON)</a>\n<br>\n\
         <p>\nProfile Descriptions:\n<ul>\n",
    );
    for (name, _, description) in profiles(snapshot) {
        let _ = writeln!(out, "<li><div class=profile-name>{name}: </div> {}</li>", escape(description));
    }
    out.push_str("</ul>\n</p>\n</body>\n</html>\n");
    out
}
