//! The modes of BENCHMARKS.md, one build of the `workload` binary each.
//! Adding a mode is one feature line in Cargo.toml and one entry here.

/// One mode: how its binary is built and the environment it runs in.
#[derive(Debug)]
pub struct Mode {
    /// The name on the command line and in the tables.
    pub name: &'static str,
    /// Cargo features of the `benchmarks` crate for this build.
    pub features: &'static str,
    /// Environment of each run.
    pub env: &'static [(&'static str, &'static str)],
    /// What the workload must report as its instrumentation, a check that
    /// the binary is the build it claims to be.
    pub instrumentation: &'static str,
    /// Whether full-size million-tasks runs in this mode (quick runs always do).
    pub million: bool,
    /// Whether a CPU profile runs during each timed part (deep+cpu): the
    /// runner then sizes the profile from the earlier runs.
    pub cpu_profile: bool,
}

/// Every mode, in the order they run and print. The ratios divide by
/// `baseline`.
pub const MODES: &[Mode] = &[
    Mode {
        name: "baseline",
        features: "",
        env: &[],
        instrumentation: "none",
        million: true,
        cpu_profile: false,
    },
    // The agent compiled in (the lean build, its allocator installed) and
    // switched off: no hooks, no threads, and the allocator only counts.
    Mode {
        name: "off",
        features: "lean",
        env: &[("TASKSCOPE_DISABLE", "1")],
        instrumentation: "taskscope-disabled",
        million: true,
        cpu_profile: false,
    },
    Mode {
        name: "lean",
        features: "lean",
        env: &[],
        instrumentation: "taskscope",
        million: true,
        cpu_profile: false,
    },
    Mode {
        name: "deep",
        features: "deep",
        env: &[],
        instrumentation: "taskscope-deep",
        million: true,
        cpu_profile: false,
    },
    // The deep build while `GET /debug/pprof/profile?seconds=N` runs at
    // 99 Hz around each timed part (see workload/cpuprof.rs).
    Mode {
        name: "deep+cpu",
        features: "deep",
        env: &[("BENCH_CPU_PROFILE", "1"), ("TASKSCOPE_CPU_HZ", "99")],
        instrumentation: "taskscope-deep+cpu",
        million: true,
        cpu_profile: true,
    },
    // console-subscriber keeps about 50 KB per live task: a million of them
    // would need some 50 GB, more than these machines have.
    Mode {
        name: "console",
        features: "console",
        env: &[("TOKIO_CONSOLE_BIND", "127.0.0.1:0")],
        instrumentation: "console",
        million: false,
        cpu_profile: false,
    },
];

/// Looks a mode up by name.
pub fn find(name: &str) -> Option<&'static Mode> {
    MODES.iter().find(|m| m.name == name)
}
