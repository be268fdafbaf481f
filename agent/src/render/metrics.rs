//! The snapshot as Prometheus metrics, in the text exposition format
//! (version 0.0.4): live tasks and spawns per spawn site, worker polls and
//! busy time, findings by kind and severity, the heap, and the agent's own
//! health. Names start with `taskscope_`, counters end in `_total`.
//!
//! Spawn sites are labels, so their number is bounded: the
//! [`Options::top_sites`] sites with the most spawns keep their own series
//! and the rest are summed under `site="other"`. Ranking by spawns (a
//! counter) rather than by live tasks keeps the set of labelled sites
//! stable from one scrape to the next, so that `rate()` over their counters
//! stays meaningful.

use std::fmt::{Display, Write};

use crate::detect::{Kind, Severity};
use crate::snapshot::{Snapshot, State};
use crate::watch::Histogram;

/// The default of [`Options::top_sites`].
pub(crate) const DEFAULT_TOP_SITES: usize = 20;

/// The content type of the text exposition format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How the metrics are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Options {
    /// Spawn sites with their own label value; the rest are `other`.
    pub(crate) top_sites: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { top_sites: DEFAULT_TOP_SITES }
    }
}

/// What the agent knows of itself beyond the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AgentStats {
    /// How long dumps have taken.
    pub(crate) dumps: Histogram,
    /// Spawns that deep mode could not track (its table was full).
    pub(crate) deep_dropped_tasks: u64,
    /// Parked-at stacks not kept (the stack table was full).
    pub(crate) deep_dropped_stacks: u64,
}

const KINDS: [Kind; 7] = [
    Kind::StuckTask,
    Kind::LeakingSpawnSite,
    Kind::BlockedWorker,
    Kind::LostWaker,
    Kind::Deadlock,
    Kind::BusySelfWake,
    Kind::HeapGrowth,
];
const SEVERITIES: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

/// The label value of spawn sites outside the top N (and of spawns past the
/// site table's cap).
pub(crate) const OTHER: &str = "other";

/// Renders `snapshot` (with its findings) and `stats` as Prometheus text.
pub(crate) fn render(snapshot: &Snapshot, stats: &AgentStats, options: &Options) -> String {
    let mut out = Out::default();
    info(&mut out, snapshot);
    sites(&mut out, snapshot, options.top_sites);
    workers(&mut out, snapshot);
    findings(&mut out, snapshot);
    heap(&mut out, snapshot);
    agent(&mut out, snapshot, stats);
    out.text
}

fn info(out: &mut Out, s: &Snapshot) {
    let f = &s.agent.features;
    let on = |b: bool| if b { "true" } else { "false" };
    out.family("taskscope_info", "gauge", "The taskscope agent: its version and which features are on.");
    out.sample(
        "taskscope_info",
        &[
            ("version", s.agent.version),
            ("tokio_unstable", on(f.tokio_unstable)),
            ("task_tracking", on(f.task_tracking)),
            ("deep", on(f.deep)),
            ("cpu", on(f.cpu)),
            ("heap", on(f.heap)),
        ],
        1,
    );
}

/// Per-site counts, for the top sites and `other`.
#[derive(Default, Clone, Copy)]
struct SiteRow {
    live: u64,
    spawned: u64,
    completed: u64,
}

fn sites(out: &mut Out, s: &Snapshot, top: usize) {
    // The registry's own overflow site (`<other>`) is never a top site.
    let mut ranked: Vec<_> =
        s.sites.iter().filter(|site| site.location != "<other>" && site.spawned > 0).collect();
    ranked.sort_by(|a, b| {
        b.spawned.cmp(&a.spawned).then(b.live.cmp(&a.live)).then(a.location.cmp(&b.location))
    });
    let kept = ranked.len().min(top);
    let mut rows: Vec<(&str, SiteRow)> = ranked[..kept]
        .iter()
        .map(|site| {
            (
                site.location.as_str(),
                SiteRow { live: site.live, spawned: site.spawned, completed: site.completed },
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    let mut other = SiteRow::default();
    for site in s.sites.iter().filter(|site| !rows.iter().any(|(l, _)| *l == site.location)) {
        other.live += site.live;
        other.spawned += site.spawned;
        other.completed += site.completed;
    }
    rows.push((OTHER, other));

    // Name, type, help, value.
    type Family = (&'static str, &'static str, &'static str, fn(&SiteRow) -> u64);
    let families: [Family; 3] = [
        ("taskscope_tasks_live", "gauge", "Live tasks, by spawn site.", |r| r.live),
        (
            "taskscope_tasks_spawned_total",
            "counter",
            "Tasks spawned, by spawn site; rate() of it is the spawn rate.",
            |r| r.spawned,
        ),
        ("taskscope_tasks_completed_total", "counter", "Tasks that completed, by spawn site.", |r| {
            r.completed
        }),
    ];
    for (name, kind, help, value) in families {
        out.family(name, kind, help);
        for (site, row) in &rows {
            out.sample(name, &[("site", site)], value(row));
        }
    }

    let running = s.tasks.iter().filter(|t| t.state == State::Running).count();
    out.family("taskscope_tasks_running", "gauge", "Live tasks inside a poll now.");
    out.sample("taskscope_tasks_running", &[], running);
    out.family(
        "taskscope_spawn_sites",
        "gauge",
        "Distinct spawn sites seen (those past the top ones are summed under site=\"other\").",
    );
    out.sample("taskscope_spawn_sites", &[], ranked.len());
}

fn workers(out: &mut Out, s: &Snapshot) {
    out.family("taskscope_workers", "gauge", "Worker threads of the runtime.");
    out.sample("taskscope_workers", &[], s.workers.len());
    let blocked = s.findings.iter().filter(|f| f.kind == Kind::BlockedWorker).count();
    out.family(
        "taskscope_workers_blocked",
        "gauge",
        "Workers blocked by a task that has been inside one poll longer than the blocked_after threshold.",
    );
    out.sample("taskscope_workers_blocked", &[], blocked);
    if s.workers.is_empty() {
        return;
    }
    let indexes: Vec<String> = s.workers.iter().map(|w| w.index.to_string()).collect();
    if s.workers.iter().all(|w| w.polls.is_some()) {
        out.family("taskscope_worker_polls_total", "counter", "Task polls, by worker.");
        for (w, i) in s.workers.iter().zip(&indexes) {
            out.sample("taskscope_worker_polls_total", &[("worker", i)], w.polls.unwrap_or(0));
        }
    }
    out.family("taskscope_worker_busy_seconds_total", "counter", "Time spent polling tasks, by worker.");
    for (w, i) in s.workers.iter().zip(&indexes) {
        out.sample("taskscope_worker_busy_seconds_total", &[("worker", i)], Seconds(w.busy_ms as f64 / 1e3));
    }
    out.family(
        "taskscope_worker_parks_total",
        "counter",
        "Times a worker parked for lack of work, by worker.",
    );
    for (w, i) in s.workers.iter().zip(&indexes) {
        out.sample("taskscope_worker_parks_total", &[("worker", i)], w.parks);
    }
    if s.workers.iter().all(|w| w.steals.is_some()) {
        out.family("taskscope_worker_steals_total", "counter", "Tasks stolen from other workers, by worker.");
        for (w, i) in s.workers.iter().zip(&indexes) {
            out.sample("taskscope_worker_steals_total", &[("worker", i)], w.steals.unwrap_or(0));
        }
    }
    if s.workers.iter().all(|w| w.local_queue.is_some()) {
        out.family("taskscope_worker_local_queue_depth", "gauge", "Tasks in a worker's local run queue.");
        for (w, i) in s.workers.iter().zip(&indexes) {
            out.sample("taskscope_worker_local_queue_depth", &[("worker", i)], w.local_queue.unwrap_or(0));
        }
    }
}

fn findings(out: &mut Out, s: &Snapshot) {
    out.family(
        "taskscope_findings",
        "gauge",
        "Current findings (stuck tasks, leaking spawn sites, ...), by kind and severity.",
    );
    for kind in KINDS {
        for severity in SEVERITIES {
            let n = s.findings.iter().filter(|f| f.kind == kind && f.severity == severity).count();
            out.sample("taskscope_findings", &[("kind", kind.as_str()), ("severity", severity.as_str())], n);
        }
    }
}

fn heap(out: &mut Out, s: &Snapshot) {
    let h = &s.heap;
    if !h.enabled {
        // No series rather than zeros: `taskscope_info{heap="false"}` says why.
        return;
    }
    let t = &h.totals;
    out.family("taskscope_heap_inuse_bytes", "gauge", "Heap memory in use (exact).");
    out.sample("taskscope_heap_inuse_bytes", &[], t.inuse_bytes);
    out.family("taskscope_heap_inuse_objects", "gauge", "Heap objects in use (exact).");
    out.sample("taskscope_heap_inuse_objects", &[], t.inuse_objects);
    out.family("taskscope_heap_allocated_bytes_total", "counter", "Heap memory allocated.");
    out.sample("taskscope_heap_allocated_bytes_total", &[], t.allocated_bytes);
    out.family("taskscope_heap_allocated_objects_total", "counter", "Heap objects allocated.");
    out.sample("taskscope_heap_allocated_objects_total", &[], t.allocated_objects);
}

fn agent(out: &mut Out, s: &Snapshot, stats: &AgentStats) {
    let a = &s.agent;
    let sampler = &s.heap.sampler;
    out.family(
        "taskscope_agent_dropped_events_total",
        "counter",
        "Events the agent could not record because a bounded table was full, by reason.",
    );
    let d = &a.dropped;
    let dropped: [(&str, u64); 12] = [
        ("task_table_full", d.tasks),
        ("site_table_full", d.sites_overflowed),
        ("deep_table_full", stats.deep_dropped_tasks),
        ("stack_table_full", stats.deep_dropped_stacks),
        ("heap_live_table_full", sampler.dropped_live_table_full),
        ("heap_stack_table_full", sampler.dropped_stack_table_full),
        ("completed_ring_full", d.completed_evicted),
        ("task_name_table_full", d.task_names),
        ("resource_table_full", d.resources),
        ("resource_wait_table_full", d.resource_waits),
        ("resource_holders_over_cap", d.resource_holders),
        ("resource_file_table_full", d.resource_files),
    ];
    for (reason, n) in dropped {
        out.sample("taskscope_agent_dropped_events_total", &[("reason", reason)], n);
    }
    out.family(
        "taskscope_agent_http_refused_total",
        "counter",
        "Requests and connections the debug endpoint turned away, by reason.",
    );
    let h = &a.http;
    let refused: [(&str, u64); 6] = [
        ("unauthorized", h.unauthorized),
        ("busy", h.busy),
        ("timed_out", h.timed_out),
        ("too_large", h.too_large),
        ("connections_refused", h.connections_refused),
        ("slow_clients", h.slow_clients),
    ];
    for (reason, n) in refused {
        out.sample("taskscope_agent_http_refused_total", &[("reason", reason)], n);
    }
    out.family("taskscope_agent_panics_total", "counter", "Panics inside the agent, caught and counted.");
    out.sample("taskscope_agent_panics_total", &[], a.panics);
    out.family("taskscope_agent_uptime_seconds", "gauge", "Time since the agent's clock started.");
    out.sample("taskscope_agent_uptime_seconds", &[], Seconds(a.uptime_ms as f64 / 1e3));
    out.family(
        "taskscope_agent_snapshot_duration_seconds",
        "gauge",
        "Time the snapshot behind this scrape took.",
    );
    out.sample("taskscope_agent_snapshot_duration_seconds", &[], Seconds(a.snapshot_ms as f64 / 1e3));

    let name = "taskscope_agent_dump_duration_seconds";
    out.family(
        name,
        "histogram",
        "Time to take a snapshot, run the detectors and render an answer, per dump.",
    );
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    for (bound, n) in stats.dumps.bounds.iter().zip(&stats.dumps.counts) {
        cumulative += n;
        out.sample(&bucket, &[("le", &Seconds(*bound).to_string())], cumulative);
    }
    out.sample(&bucket, &[("le", "+Inf")], stats.dumps.count());
    out.sample(&format!("{name}_sum"), &[], Seconds(stats.dumps.sum));
    out.sample(&format!("{name}_count"), &[], stats.dumps.count());
}

/// A float sample value: Rust's shortest round-trip form, which Prometheus
/// parses (`0.001`, `12.5`, `3`).
struct Seconds(f64);

impl Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Default)]
struct Out {
    text: String,
}

impl Out {
    /// The `# HELP` and `# TYPE` lines of a metric family.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// A label value: backslash, double quote and line feed are escaped.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A help text: backslash and line feed are escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Finding;
    use crate::snapshot::fixture;

    fn stats() -> AgentStats {
        AgentStats {
            dumps: Histogram {
                bounds: &crate::watch::DUMP_BOUNDS,
                counts: vec![3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                sum: 12.5,
            },
            deep_dropped_tasks: 4,
            deep_dropped_stacks: 0,
        }
    }

    fn lines_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' '])).collect()
    }

    fn finding(kind: Kind, severity: Severity) -> Finding {
        Finding {
            kind,
            severity,
            location: "src/main.rs:1:1".into(),
            task_ids: vec![1],
            since_ms: 1,
            message: String::new(),
            evidence: serde_json::Value::Null,
        }
    }

    #[test]
    fn sites_have_live_and_spawned_series_and_the_rest_is_other() {
        let s = fixture();
        let text = render(&s, &stats(), &Options { top_sites: 1 });
        // src/handlers.rs:12:5 spawned 1000, src/main.rs:40:9 only 2.
        assert_eq!(
            lines_of(&text, "taskscope_tasks_live"),
            [
                "taskscope_tasks_live{site=\"src/handlers.rs:12:5\"} 2",
                "taskscope_tasks_live{site=\"other\"} 2"
            ]
        );
        assert_eq!(
            lines_of(&text, "taskscope_tasks_spawned_total"),
            [
                "taskscope_tasks_spawned_total{site=\"src/handlers.rs:12:5\"} 1000",
                "taskscope_tasks_spawned_total{site=\"other\"} 2"
            ]
        );
        assert_eq!(lines_of(&text, "taskscope_tasks_running"), ["taskscope_tasks_running 1"]);
        assert_eq!(lines_of(&text, "taskscope_spawn_sites"), ["taskscope_spawn_sites 2"]);

        let all = render(&s, &stats(), &Options::default());
        assert_eq!(
            lines_of(&all, "taskscope_tasks_live"),
            [
                "taskscope_tasks_live{site=\"src/handlers.rs:12:5\"} 2",
                "taskscope_tasks_live{site=\"src/main.rs:40:9\"} 2",
                "taskscope_tasks_live{site=\"other\"} 0"
            ]
        );
    }

    #[test]
    fn every_family_has_help_and_type_and_counters_end_in_total() {
        let mut s = fixture();
        s.workers = vec![crate::snapshot::Worker {
            index: 0,
            polls: Some(10),
            parks: 2,
            busy_ms: 1500,
            steals: Some(0),
            local_queue: Some(1),
        }];
        s.heap.enabled = true;
        s.heap.totals.inuse_bytes = 4096;
        let text = render(&s, &stats(), &Options::default());
        let mut families = Vec::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut parts = line.split(' ').skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(name.starts_with("taskscope_"), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            assert!(text.contains(&format!("# HELP {name} ")), "no HELP for {name}");
            families.push(name);
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(f)))
                .unwrap_or(name);
            assert!(families.contains(&family), "{line} has no TYPE");
        }
        assert!(text.contains("\ntaskscope_heap_inuse_bytes 4096\n"), "{text}");
        assert!(text.contains("\ntaskscope_worker_busy_seconds_total{worker=\"0\"} 1.5\n"), "{text}");
        assert!(text.contains("\ntaskscope_worker_polls_total{worker=\"0\"} 10\n"), "{text}");
    }

    #[test]
    fn findings_are_counted_by_kind_and_severity_with_zeros() {
        let mut s = fixture();
        s.findings = vec![
            finding(Kind::StuckTask, Severity::Warning),
            finding(Kind::StuckTask, Severity::Warning),
            finding(Kind::BlockedWorker, Severity::Warning),
        ];
        let text = render(&s, &stats(), &Options::default());
        let findings = lines_of(&text, "taskscope_findings");
        assert_eq!(findings.len(), KINDS.len() * SEVERITIES.len());
        assert!(findings.contains(&"taskscope_findings{kind=\"stuck_task\",severity=\"warning\"} 2"));
        assert!(findings.contains(&"taskscope_findings{kind=\"lost_waker\",severity=\"critical\"} 0"));
        assert_eq!(lines_of(&text, "taskscope_workers_blocked"), ["taskscope_workers_blocked 1"]);
    }

    #[test]
    fn the_dump_histogram_is_cumulative_and_ends_at_inf() {
        let text = render(&fixture(), &stats(), &Options::default());
        let buckets = lines_of(&text, "taskscope_agent_dump_duration_seconds_bucket");
        assert_eq!(buckets.first(), Some(&"taskscope_agent_dump_duration_seconds_bucket{le=\"0.001\"} 3"));
        assert!(buckets.contains(&"taskscope_agent_dump_duration_seconds_bucket{le=\"0.0025\"} 4"));
        assert!(buckets.contains(&"taskscope_agent_dump_duration_seconds_bucket{le=\"5\"} 4"));
        assert_eq!(buckets.last(), Some(&"taskscope_agent_dump_duration_seconds_bucket{le=\"+Inf\"} 6"));
        assert!(text.contains("\ntaskscope_agent_dump_duration_seconds_sum 12.5\n"));
        assert!(text.contains("\ntaskscope_agent_dump_duration_seconds_count 6\n"));
        assert!(text.contains("\ntaskscope_agent_dropped_events_total{reason=\"deep_table_full\"} 4\n"));
    }

    #[test]
    fn without_the_allocator_there_are_no_heap_series() {
        let text = render(&fixture(), &stats(), &Options::default());
        assert!(!text.contains("taskscope_heap_"), "{text}");
        assert!(text.contains("heap=\"false\""), "{text}");
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label(r#"C:\src\"x".rs"#), r#"C:\\src\\\"x\".rs"#);
        assert_eq!(escape_label("a\nb"), "a\\nb");
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
        let mut s = fixture();
        s.sites[1].location = "src/\"odd\"\\dir\nname.rs:1:1".into();
        let text = render(&s, &stats(), &Options::default());
        assert!(text.contains(r#"taskscope_tasks_live{site="src/\"odd\"\\dir\nname.rs:1:1"} 2"#), "{text}");
    }

    #[test]
    fn a_real_parser_reads_every_sample_with_its_type() {
        use prometheus_parse::{Scrape, Value};
        let mut s = fixture();
        s.findings = vec![finding(Kind::LeakingSpawnSite, Severity::Critical)];
        let text = render(&s, &stats(), &Options::default());
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        // The parser folds a histogram's buckets into one sample.
        let lines = text.lines().filter(|l| !l.starts_with('#') && !l.contains("_bucket{")).count();
        assert_eq!(scrape.samples.len(), lines + 1, "{text}");
        for sample in &scrape.samples {
            let name = sample.metric.as_str();
            match &sample.value {
                Value::Counter(_) => assert!(name.ends_with("_total"), "{name}"),
                Value::Gauge(_) => assert!(!name.ends_with("_total"), "{name}"),
                Value::Histogram(buckets) => {
                    assert_eq!(name, "taskscope_agent_dump_duration_seconds");
                    assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count), "{buckets:?}");
                    assert_eq!(buckets.last().map(|b| (b.less_than, b.count)), Some((f64::INFINITY, 6.0)));
                }
                // `_sum` and `_count` of the histogram.
                Value::Untyped(_) => {
                    assert!(name.starts_with("taskscope_agent_dump_duration_seconds_"), "{name}")
                }
                Value::Summary(_) => panic!("no summaries are rendered: {name}"),
            }
            assert!(
                scrape.docs.contains_key(name.trim_end_matches("_sum").trim_end_matches("_count")),
                "{name}"
            );
        }
        let find = |metric: &str, label: (&str, &str)| {
            scrape
                .samples
                .iter()
                .find(|x| x.metric == metric && x.labels.get(label.0) == Some(label.1))
                .map(|x| x.value.clone())
        };
        assert_eq!(find("taskscope_tasks_live", ("site", "src/handlers.rs:12:5")), Some(Value::Gauge(2.0)));
        assert_eq!(
            find("taskscope_tasks_spawned_total", ("site", "src/handlers.rs:12:5")),
            Some(Value::Counter(1000.0))
        );
        assert!(find("taskscope_findings", ("kind", "leaking_spawn_site")).is_some());
    }

    /// `promtool check metrics` (Debian's `prometheus` package) validates the
    /// format, escapes included, and lints names; skipped where it is not
    /// installed, except in CI.
    #[test]
    fn promtool_accepts_the_rendering_with_odd_label_values() {
        let mut s = fixture();
        s.sites[1].location = "C:\\src\\\"odd\"\nname.rs:1:1".into();
        s.findings = vec![finding(Kind::StuckTask, Severity::Warning)];
        let text = render(&s, &stats(), &Options::default());
        if let Some(verdict) = promtool_check(&text) {
            verdict.unwrap_or_else(|e| panic!("{e}\n{text}"));
        }
    }

    /// Runs `promtool check metrics` on `text`: `None` if promtool is absent
    /// (a failure when `CI` is set).
    pub(crate) fn promtool_check(text: &str) -> Option<Result<(), String>> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI needs promtool (apt-get install prometheus): {e}"
                );
                eprintln!("skipped: promtool is not installed ({e}); apt-get install prometheus");
                return None;
            }
        };
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let said =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Some(if out.status.success() && said.trim().is_empty() { Ok(()) } else { Err(said) })
    }
}
