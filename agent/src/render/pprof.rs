//! gzip'd `profile.proto`, built with pprof-rs's prost types.

use std::collections::HashMap;
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use pprof::protos::{self, Message};

use crate::snapshot::{Snapshot, State};

/// Builds a `Profile`, interning strings, functions and locations.
#[derive(Debug, Default)]
pub(crate) struct ProfileBuilder {
    profile: protos::Profile,
    strings: HashMap<String, i64>,
    locations: HashMap<(String, String, i64), u64>,
}

impl ProfileBuilder {
    /// A profile whose samples carry `types`, e.g. `[("goroutine", "count")]`.
    pub(crate) fn new(types: &[(&str, &str)], period: (&str, &str, i64)) -> Self {
        let mut b = ProfileBuilder::default();
        b.profile.string_table.push(String::new());
        b.strings.insert(String::new(), 0);
        b.profile.sample_type = types.iter().map(|(t, u)| b.value_type(t, u)).collect();
        b.profile.period_type = Some(b.value_type(period.0, period.1));
        b.profile.period = period.2;
        b.profile.time_nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        b
    }

    pub(crate) fn string(&mut self, s: &str) -> i64 {
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

    /// The location of a frame named `function` at `file:line`.
    pub(crate) fn location(&mut self, function: &str, file: &str, line: i64) -> u64 {
        let key = (function.to_string(), file.to_string(), line);
        if let Some(&id) = self.locations.get(&key) {
            return id;
        }
        let id = self.profile.location.len() as u64 + 1;
        let (name, filename) = (self.string(function), self.string(file));
        self.profile.function.push(protos::Function {
            id,
            name,
            system_name: name,
            filename,
            start_line: line,
        });
        self.profile.location.push(protos::Location {
            id,
            line: vec![protos::Line { function_id: id, line }],
            ..Default::default()
        });
        self.locations.insert(key, id);
        id
    }

    /// Adds a sample; `stack` is leaf first, as pprof wants.
    pub(crate) fn sample(&mut self, stack: Vec<u64>, values: Vec<i64>, labels: &[(&str, &str)]) {
        let label = labels
            .iter()
            .map(|(k, v)| protos::Label { key: self.string(k), str: self.string(v), ..Default::default() })
            .collect();
        self.profile.sample.push(protos::Sample { location_id: stack, value: values, label });
    }

    pub(crate) fn comment(&mut self, text: &str) {
        let i = self.string(text);
        self.profile.comment.push(i);
    }

    /// The sample type tools show unless told otherwise (pprof's default is
    /// the last type), e.g. `alloc_space` for Go's `allocs` profile.
    pub(crate) fn default_sample_type(&mut self, ty: &str) {
        self.profile.default_sample_type = self.string(ty);
    }

    /// The gzip'd encoding.
    pub(crate) fn gzip(self) -> Vec<u8> {
        let raw = self.profile.encode_to_vec();
        let mut gz = GzEncoder::new(Vec::with_capacity(raw.len() / 2 + 64), Compression::default());
        // Writing to a Vec cannot fail.
        let _ = gz.write_all(&raw);
        gz.finish().unwrap_or_default()
    }

    #[cfg(test)]
    pub(crate) fn build(self) -> protos::Profile {
        self.profile
    }
}

/// Splits `file:line:col` into the file and the line.
pub(crate) fn file_and_line(location: &str) -> (&str, i64) {
    let mut parts = location.rsplitn(3, ':');
    let (_col, line, file) = (parts.next(), parts.next(), parts.next());
    match (file, line.and_then(|l| l.parse().ok())) {
        (Some(file), Some(line)) => (file, line),
        _ => (location, 0),
    }
}

/// The tasks profile (`debug=0`): sample type `goroutine/count`, one sample
/// per spawn site, parked-at stack and state; the stack's shown frames (deep
/// mode) sit on a root frame naming the spawn site.
pub(crate) fn tasks_profile(snapshot: &Snapshot) -> ProfileBuilder {
    let mut b = ProfileBuilder::new(&[("goroutine", "count")], ("goroutine", "count", 1));
    let mut counts: HashMap<(u32, Option<u32>, State, &str), i64> = HashMap::new();
    for t in &snapshot.tasks {
        let stack = if t.state == State::Idle { t.parked_at } else { None };
        *counts.entry((t.site, stack, t.state, t.wait.unwrap_or(""))).or_default() += 1;
    }
    let mut keys: Vec<_> = counts.keys().copied().collect();
    keys.sort_by_key(|&(site, stack, state, wait)| (site, stack, state.as_str(), wait));
    for key @ (site, stack, state, wait) in keys {
        let location = snapshot.location(site).to_string();
        let mut frames = Vec::new();
        if let Some(stack) = stack.and_then(|id| snapshot.stacks.iter().find(|s| s.id == id)) {
            for f in stack.trimmed().0 {
                let file = f.file.as_deref().unwrap_or("");
                frames.push(b.location(&f.function, file, f.line.map_or(0, i64::from)));
            }
        }
        let (file, line) = file_and_line(&location);
        frames.push(b.location(&format!("task spawned at {location}"), file, line));
        let mut labels = vec![("state", state.as_str())];
        if !wait.is_empty() {
            labels.push(("wait", wait));
        }
        b.sample(frames, vec![counts[&key]], &labels);
    }
    if let Some(problem) = snapshot.agent.problem {
        b.comment(&format!("task tracking is off: {problem}"));
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_split_into_file_and_line() {
        assert_eq!(file_and_line("src/main.rs:12:5"), ("src/main.rs", 12));
        assert_eq!(file_and_line("C:\\x\\main.rs:7:1"), ("C:\\x\\main.rs", 7));
        assert_eq!(file_and_line("<other>"), ("<other>", 0));
    }

    #[test]
    fn the_builder_interns_strings_and_locations() {
        let mut b = ProfileBuilder::new(&[("goroutine", "count")], ("goroutine", "count", 1));
        let a = b.location("f", "a.rs", 1);
        assert_eq!(b.location("f", "a.rs", 1), a);
        let c = b.location("g", "a.rs", 2);
        assert_ne!(a, c);
        b.sample(vec![a], vec![3], &[("state", "idle")]);
        let p = b.build();
        assert_eq!(p.string_table[0], "");
        assert_eq!(p.location.len(), 2);
        assert_eq!(p.function.len(), 2);
        assert_eq!(p.string_table.iter().filter(|s| *s == "a.rs").count(), 1);
        assert_eq!(p.sample[0].value, vec![3]);
    }
}
