//! A [`Recording`] as Go's CPU `profile.proto` (gzip'd) and as folded stacks
//! for flamegraphs.
//!
//! Unlike the other profiles, which go through
//! [`ProfileBuilder`](crate::render::pprof::ProfileBuilder), a CPU profile
//! needs locations with several lines (inlined functions), a duration and a
//! start time, so it fills pprof-rs's prost types here directly.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use flate2::write::GzEncoder;
use flate2::Compression;
use pprof::protos::{self, Message};

use super::symbols::{Location, Recording};

/// The gzip'd `profile.proto`: sample types `samples/count` and
/// `cpu/nanoseconds`, labels `thread` and `spawn_site`.
pub(crate) fn pprof(recording: &Recording) -> Vec<u8> {
    let raw = encode(recording).encode_to_vec();
    let mut gz = GzEncoder::new(Vec::with_capacity(raw.len() / 2 + 64), Compression::default());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(&raw);
    gz.finish().unwrap_or_default()
}

/// Folded stacks, root first: the thread, the task's spawn site when a task
/// was being polled, then the frames, inlined functions included.
pub(crate) fn folded(recording: &Recording) -> Vec<(String, u64)> {
    let mut lines: HashMap<String, u64> = HashMap::new();
    for sample in &recording.samples {
        let mut frames: Vec<String> = vec![sample.thread.clone()];
        if let Some(site) = &sample.spawn_site {
            frames.push(format!("[task spawned at {site}]"));
        }
        for location in sample.stack.iter().rev() {
            frames.extend(location.lines.iter().rev().map(|l| l.function.clone()));
        }
        *lines.entry(crate::render::flamegraph::fold(&frames)).or_default() += sample.count;
    }
    let mut lines: Vec<_> = lines.into_iter().collect();
    lines.sort();
    lines
}

/// Interns strings, functions and locations into a `Profile`.
#[derive(Default)]
struct Encoder {
    profile: protos::Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(String, String), u64>,
    locations: HashMap<*const Location, u64>,
}

impl Encoder {
    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn value_type(&mut self, ty: &str, unit: &str) -> protos::ValueType {
        protos::ValueType { ty: self.string(ty), unit: self.string(unit) }
    }

    fn function(&mut self, name: &str, system_name: &str, file: &str) -> u64 {
        let key = (name.to_string(), file.to_string());
        if let Some(&id) = self.functions.get(&key) {
            return id;
        }
        let id = self.profile.function.len() as u64 + 1;
        let function = protos::Function {
            id,
            name: self.string(name),
            system_name: self.string(if system_name.is_empty() { name } else { system_name }),
            filename: self.string(file),
            start_line: 0,
        };
        self.profile.function.push(function);
        self.functions.insert(key, id);
        id
    }

    fn location(&mut self, location: &Arc<Location>) -> u64 {
        if let Some(&id) = self.locations.get(&Arc::as_ptr(location)) {
            return id;
        }
        let line = location
            .lines
            .iter()
            .map(|l| protos::Line {
                function_id: self.function(&l.function, &l.system_name, &l.file),
                line: l.line,
            })
            .collect();
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(protos::Location {
            id,
            address: location.address,
            line,
            ..Default::default()
        });
        self.locations.insert(Arc::as_ptr(location), id);
        id
    }
}

fn encode(recording: &Recording) -> protos::Profile {
    let mut e = Encoder::default();
    e.string("");
    e.profile.sample_type = vec![e.value_type("samples", "count"), e.value_type("cpu", "nanoseconds")];
    e.profile.period_type = Some(e.value_type("cpu", "nanoseconds"));
    let period = recording.period_nanos();
    e.profile.period = period;
    e.profile.time_nanos =
        recording.start_time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    e.profile.duration_nanos = recording.duration.as_nanos() as i64;
    for sample in &recording.samples {
        let location_id = sample.stack.iter().map(|l| e.location(l)).collect();
        let mut label = vec![protos::Label {
            key: e.string("thread"),
            str: e.string(&sample.thread),
            ..Default::default()
        }];
        if let Some(site) = &sample.spawn_site {
            label.push(protos::Label {
                key: e.string("spawn_site"),
                str: e.string(site),
                ..Default::default()
            });
        }
        let count = sample.count as i64;
        e.profile.sample.push(protos::Sample { location_id, value: vec![count, count * period], label });
    }
    let mut comments = vec![format!(
        "taskscope CPU profile: {} samples at {} Hz of process CPU time (SIGPROF, pprof-rs, frame pointers)",
        recording.total(),
        recording.hz
    )];
    if let Some(cpu) = recording.process_cpu {
        comments.push(format!(
            "the kernel counted {:.3} s of process CPU time meanwhile; the samples account for {:.3} s",
            cpu.as_secs_f64(),
            (recording.total() as i64 * period) as f64 / 1e9
        ));
    }
    comments.extend(recording.notes.iter().cloned());
    e.profile.comment = comments.iter().map(|c| e.string(c)).collect();
    e.profile
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::symbols::{Line, Sample};
    use std::time::{Duration, SystemTime};

    fn location(address: u64, names: &[&str]) -> Arc<Location> {
        let lines = names
            .iter()
            .map(|n| Line {
                function: n.to_string(),
                system_name: String::new(),
                file: "src/x.rs".into(),
                line: 7,
            })
            .collect();
        Arc::new(Location { address, lines })
    }

    fn recording() -> Recording {
        let main = location(1, &["app::main"]);
        // `inner` was inlined into `outer`.
        let work = location(2, &["app::inner", "app::outer"]);
        let samples = vec![
            Sample {
                thread: "worker".into(),
                spawn_site: Some("src/x.rs:3:5".into()),
                stack: vec![work.clone(), main.clone()],
                count: 3,
            },
            Sample { thread: "worker".into(), spawn_site: None, stack: vec![main], count: 1 },
        ];
        Recording {
            hz: 100,
            start_time: SystemTime::now(),
            duration: Duration::from_secs(2),
            process_cpu: Some(Duration::from_millis(41)),
            samples,
            notes: vec!["a note".into()],
        }
    }

    #[test]
    fn the_profile_has_go_cpu_sample_types_and_honest_values() {
        let p = encode(&recording());
        let s = |i: i64| p.string_table[i as usize].as_str();
        let types: Vec<_> = p.sample_type.iter().map(|t| (s(t.ty), s(t.unit))).collect();
        assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
        assert_eq!(p.period, 10_000_000);
        assert_eq!(p.duration_nanos, 2_000_000_000);
        assert_eq!(p.sample[0].value, vec![3, 30_000_000]);
        let labels: Vec<_> = p.sample[0].label.iter().map(|l| (s(l.key), s(l.str))).collect();
        assert_eq!(labels, [("thread", "worker"), ("spawn_site", "src/x.rs:3:5")]);
        assert_eq!(p.sample[1].label.len(), 1);
        // Shared locations are interned; inlined functions are lines of one location.
        assert_eq!(p.location.len(), 2);
        assert_eq!(p.location[0].line.len(), 2);
        assert_eq!(p.function.len(), 3);
        assert!(p.comment.iter().any(|&c| s(c) == "a note"));
        assert_eq!(s(0), "");
    }

    #[test]
    fn the_gzip_decodes() {
        use std::io::Read;
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&pprof(&recording())[..]).read_to_end(&mut raw).unwrap();
        assert_eq!(protos::Profile::decode(&raw[..]).unwrap().sample.len(), 2);
    }

    #[test]
    fn folded_stacks_start_at_the_thread_and_the_task() {
        let lines = folded(&recording());
        assert_eq!(
            lines,
            [
                ("worker;[task spawned at src/x.rs:3:5];app::main;app::outer;app::inner".to_string(), 3),
                ("worker;app::main".to_string(), 1),
            ]
        );
    }
}
