//! Heap profiles as tools read them: gzip'd `profile.proto` with Go's sample
//! types, Go's legacy text (`debug=1`), and folded stacks for flamegraphs.
//! Pure functions of a [`HeapProfile`].

use std::fmt::Write;

use crate::heap::{Counts, HeapProfile, Record, HOW_TO_ENABLE, SAMPLING_OFF};
use crate::render::flamegraph::{self, FlamegraphOptions};
use crate::render::pprof::ProfileBuilder;

/// Go's heap sample types, in Go's order.
const TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

/// One of the four values of a heap sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SampleType {
    AllocObjects,
    AllocSpace,
    InuseObjects,
    #[default]
    InuseSpace,
}

impl SampleType {
    pub(crate) const NAMES: &'static str = "inuse_space, inuse_objects, alloc_space, alloc_objects";

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "alloc_objects" => SampleType::AllocObjects,
            "alloc_space" => SampleType::AllocSpace,
            "inuse_objects" => SampleType::InuseObjects,
            "inuse_space" => SampleType::InuseSpace,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        TYPES[self as usize].0
    }

    fn value(self, c: &Counts) -> f64 {
        match self {
            SampleType::AllocObjects => c.alloc_objects,
            SampleType::AllocSpace => c.alloc_bytes,
            SampleType::InuseObjects => c.inuse_objects(),
            SampleType::InuseSpace => c.inuse_bytes(),
        }
    }

    fn unit(self) -> &'static str {
        match self {
            SampleType::AllocObjects | SampleType::InuseObjects => "objects",
            SampleType::AllocSpace | SampleType::InuseSpace => "bytes",
        }
    }
}

/// What a record with no frames is called.
fn placeholder(r: &Record) -> &'static str {
    if r.id == 0 {
        "<stack table full>"
    } else if r.addresses.is_empty() {
        "<stack not walked>"
    } else {
        "<unsymbolized>"
    }
}

/// The profile of `/debug/pprof/heap` (`default` = `inuse_space`) and
/// `/debug/pprof/allocs` (`alloc_space`): one sample per stack and spawn
/// site, labelled `task_site`, with estimated (unbiased) values.
pub(crate) fn profile(p: &HeapProfile, default: SampleType) -> ProfileBuilder {
    let mut b = ProfileBuilder::new(&TYPES, ("space", "bytes", p.sample_bytes as i64));
    b.default_sample_type(default.as_str());
    for r in &p.records {
        let c = &r.counts;
        let values: Vec<i64> = [c.alloc_objects, c.alloc_bytes, c.inuse_objects(), c.inuse_bytes()]
            .iter()
            .map(|v| v.round() as i64)
            .collect();
        if values.iter().all(|&v| v == 0) {
            continue;
        }
        let stack: Vec<u64> = if r.frames.is_empty() {
            vec![b.location(placeholder(r), "", 0)]
        } else {
            r.frames.iter().map(|f| b.location(&f.function, &f.file, f.line as i64)).collect()
        };
        let labels: Vec<(&str, &str)> =
            r.task_site.as_deref().map(|s| ("task_site", s)).into_iter().collect();
        b.sample(stack, values, &labels);
    }
    for line in notes(p) {
        b.comment(&line);
    }
    b
}

/// What the profile's comments and the text's trailer say: how figures
/// were made, the exact totals, and anything missing or dropped.
fn notes(p: &HeapProfile) -> Vec<String> {
    let mut out = Vec::new();
    if !p.installed {
        out.push(HOW_TO_ENABLE.to_string());
        return out;
    }
    if p.sample_bytes == 0 {
        out.push(SAMPLING_OFF.to_string());
    } else {
        out.push(format!(
            "sampled on average every {} bytes allocated; each sample is scaled by 1/(1-exp(-size/{})), \
             so the values are unbiased estimates",
            p.sample_bytes, p.sample_bytes
        ));
    }
    let t = &p.totals;
    out.push(format!(
        "exact totals: allocated {} bytes in {} objects, freed {} bytes in {} objects, in use {} bytes in {} objects",
        t.allocated_bytes,
        t.allocated_objects,
        t.freed_bytes,
        t.freed_objects,
        t.inuse_bytes(),
        t.inuse_objects()
    ));
    let s = &p.stats;
    let dropped = s.dropped_live_table_full + s.dropped_reentrant + s.dropped_unsampleable;
    if dropped + s.dropped_stack_table_full + s.no_stack > 0 {
        out.push(format!(
            "samples dropped: {} (live table full), {} (inside the allocator), {} (alignment over 2048); \
             {} kept as <stack table full>; {} without a stack",
            s.dropped_live_table_full,
            s.dropped_reentrant,
            s.dropped_unsampleable,
            s.dropped_stack_table_full,
            s.no_stack
        ));
    }
    out
}

/// Go's legacy text format (`debug=1`): raw sample counts per stack, which
/// `heap/<2 * rate>` tells readers how to scale; then the exact totals.
pub(crate) fn text(p: &HeapProfile) -> String {
    let mut records: Vec<&Record> = p.records.iter().collect();
    let inuse = |c: &Counts| c.alloc_sampled_bytes as i64 - c.free_sampled_bytes as i64;
    records.sort_by(|a, b| inuse(&b.counts).cmp(&inuse(&a.counts)).then(a.id.cmp(&b.id)));
    let mut total = (0i64, 0i64, 0u64, 0u64);
    for r in &records {
        total.0 += r.counts.inuse_samples();
        total.1 += inuse(&r.counts);
        total.2 += r.counts.alloc_samples;
        total.3 += r.counts.alloc_sampled_bytes;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "heap profile: {}: {} [{}: {}] @ heap/{}",
        total.0,
        total.1,
        total.2,
        total.3,
        2 * p.sample_bytes
    );
    if !p.installed {
        let _ = writeln!(out, "# {HOW_TO_ENABLE}");
    }
    for r in records {
        let c = &r.counts;
        let _ = write!(
            out,
            "{}: {} [{}: {}] @",
            c.inuse_samples(),
            inuse(c),
            c.alloc_samples,
            c.alloc_sampled_bytes
        );
        for a in &r.addresses {
            let _ = write!(out, " {a:#x}");
        }
        out.push('\n');
        if let Some(site) = &r.task_site {
            let _ = writeln!(out, "#\ttask spawned at {site}");
        }
        if r.frames.is_empty() {
            let _ = writeln!(out, "#\t{}", placeholder(r));
        }
        for f in &r.frames {
            let _ = writeln!(out, "#\t{}\t{}", f.function, f.location());
        }
        out.push('\n');
    }
    let _ = writeln!(out, "# taskscope.HeapStats");
    for line in notes(p) {
        let _ = writeln!(out, "# {line}");
    }
    let s = &p.stats;
    let _ = writeln!(out, "# Samples = {}", s.samples);
    let _ = writeln!(out, "# LiveSamples = {}", s.live_samples);
    let _ = writeln!(out, "# Stacks = {}", s.stacks);
    out
}

/// The flamegraph of `sample`: estimated values per stack, root first.
pub(crate) fn flamegraph(
    p: &HeapProfile,
    sample: SampleType,
    mut options: FlamegraphOptions,
) -> Result<Vec<u8>, std::io::Error> {
    options.count_name = sample.unit().to_string();
    options.title = match (p.installed, p.sample_bytes) {
        (false, _) => "Heap: profiling is off".to_string(),
        (true, 0) => "Heap: sampling is off".to_string(),
        (true, rate) => format!("Heap: {} (estimated from samples every {rate} bytes)", sample.as_str()),
    };
    if options.subtitle.is_none() {
        options.subtitle = match (p.installed, p.sample_bytes) {
            (false, _) => Some(HOW_TO_ENABLE.to_string()),
            (true, 0) => Some(SAMPLING_OFF.to_string()),
            _ => None,
        };
    }
    let folded = p.records.iter().map(|r| {
        let names: Vec<&str> = if r.frames.is_empty() {
            vec![placeholder(r)]
        } else {
            r.frames.iter().rev().map(|f| f.function.as_str()).collect()
        };
        (flamegraph::fold(&names), sample.value(&r.counts).max(0.0).round() as u64)
    });
    flamegraph::svg(folded, &options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::Frame;

    fn frame(function: &str, line: u32) -> Frame {
        Frame { function: function.into(), file: "src/main.rs".into(), line, column: 5 }
    }

    fn fixture() -> HeapProfile {
        let counts = |alloc: f64, free: f64| Counts {
            alloc_samples: 4,
            alloc_sampled_bytes: 4096,
            free_samples: 1,
            free_sampled_bytes: 1024,
            alloc_objects: alloc,
            alloc_bytes: alloc * 1024.0,
            free_objects: free,
            free_bytes: free * 1024.0,
        };
        let mut p = HeapProfile { installed: true, sample_bytes: 524_288, ..Default::default() };
        p.records = vec![
            Record {
                id: 3,
                addresses: vec![0x10, 0x20],
                frames: vec![frame("app::cache::insert", 42), frame("app::main", 7)],
                task_site: Some("src/main.rs:12:5".into()),
                counts: counts(2048.0, 512.0),
            },
            Record {
                id: 0,
                addresses: vec![],
                frames: vec![],
                task_site: None,
                counts: Counts {
                    alloc_samples: 1,
                    alloc_sampled_bytes: 100,
                    alloc_objects: 10.0,
                    alloc_bytes: 1000.0,
                    ..Counts::default()
                },
            },
        ];
        p.totals.allocated_bytes = 5_000_000;
        p.totals.allocated_objects = 3_000;
        p
    }

    #[test]
    fn the_profile_has_gos_types_period_and_a_task_site_label() {
        let p = profile(&fixture(), SampleType::AllocSpace).build();
        let s = |i: i64| p.string_table[i as usize].as_str();
        let types: Vec<_> = p.sample_type.iter().map(|t| (s(t.ty), s(t.unit))).collect();
        assert_eq!(types, TYPES);
        let period = p.period_type.as_ref().unwrap();
        assert_eq!((s(period.ty), s(period.unit), p.period), ("space", "bytes", 524_288));
        assert_eq!(s(p.default_sample_type), "alloc_space");
        assert_eq!(p.sample.len(), 2);
        let first = &p.sample[0];
        assert_eq!(first.value, vec![2048, 2048 * 1024, 1536, 1536 * 1024]);
        assert_eq!((s(first.label[0].key), s(first.label[0].str)), ("task_site", "src/main.rs:12:5"));
        // Leaf first: the allocating function, then its caller.
        let leaf = p.location.iter().find(|l| l.id == first.location_id[0]).unwrap();
        let f = p.function.iter().find(|f| f.id == leaf.line[0].function_id).unwrap();
        assert_eq!((s(f.name), leaf.line[0].line), ("app::cache::insert", 42));
        assert!(p.comment.iter().any(|&c| s(c).starts_with("exact totals: allocated 5000000 bytes")));
    }

    #[test]
    fn without_the_allocator_the_profile_is_valid_empty_and_says_how_to_enable() {
        let p = HeapProfile::default();
        let built = profile(&p, SampleType::InuseSpace).build();
        assert!(built.sample.is_empty());
        assert_eq!(built.sample_type.len(), 4);
        assert!(built
            .comment
            .iter()
            .any(|&c| built.string_table[c as usize].contains("#[global_allocator]")));
        let text = text(&p);
        assert!(text.starts_with("heap profile: 0: 0 [0: 0] @ heap/0\n# heap profiling is off"), "{text}");
        let svg =
            String::from_utf8(flamegraph(&p, SampleType::InuseSpace, Default::default()).unwrap()).unwrap();
        assert!(svg.contains("profiling is off"), "{svg}");
    }

    #[test]
    fn the_text_is_gos_legacy_format_with_the_totals_after() {
        let text = text(&fixture());
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("heap profile: 4: 3172 [5: 4196] @ heap/1048576"));
        assert_eq!(lines.next(), Some("3: 3072 [4: 4096] @ 0x10 0x20"));
        assert_eq!(lines.next(), Some("#\ttask spawned at src/main.rs:12:5"));
        assert_eq!(lines.next(), Some("#\tapp::cache::insert\tsrc/main.rs:42:5"));
        assert!(text.contains("#\t<stack table full>\n"), "{text}");
        assert!(text.contains("# taskscope.HeapStats\n# sampled on average every 524288 bytes"), "{text}");
    }

    #[test]
    fn the_flamegraph_draws_the_chosen_values_root_first() {
        let svg = flamegraph(&fixture(), SampleType::InuseSpace, Default::default()).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("app::cache::insert (1,572,864 bytes"), "{}", &svg[..2000.min(svg.len())]);
        assert!(svg.contains("inuse_space"));
    }
}
