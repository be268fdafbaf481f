//! deep+cpu mode: a CPU profile taken over HTTP from the agent, as a user
//! would take one (`GET /debug/pprof/profile?seconds=N`), running during
//! the timed part of a workload.
//!
//! The request is made from a thread of the workload (`bench-profile`).
//! The timed part starts only once the profiler's SIGPROF timer is armed in
//! this process (`getitimer(ITIMER_PROF)`), and after the profile has been
//! read, its own start time and duration must contain the timed part. The
//! profile's sample count is reported, so a profile that sampled nothing
//! shows.

use std::io::Read;
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{probe, App, Error};

/// The environment variable that asks a workload to run under a CPU
/// profile; its value is the sampling rate in Hz (deep+cpu sets 99).
pub const ENV: &str = "BENCH_CPU_PROFILE";

/// Whether this run is to be profiled, and for how long when the workload
/// cannot tell in advance.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The runner's estimate in seconds (`--cpu-profile-secs`), from the
    /// earlier runs of the same workload.
    hint: Option<u64>,
}

impl Plan {
    /// The plan of this run: `None` unless `BENCH_CPU_PROFILE` is set.
    pub fn from_env(hint: Option<u64>) -> Option<Plan> {
        std::env::var_os(ENV).filter(|v| !v.is_empty() && v != "0").map(|_| Plan { hint })
    }

    /// Starts the profile and returns once it samples. `known` is the
    /// length of the timed part when the workload knows it in advance;
    /// otherwise the runner's hint is used, else `default` seconds.
    pub fn start(&self, app: &App, known: Option<f64>, default: u64) -> Result<Running, Error> {
        let addr = app.agent_addr().ok_or("a CPU profile needs a serving taskscope agent (a deep build)")?;
        let secs = known.map(|k| k.ceil() as u64 + 1).or(self.hint).unwrap_or(default).max(1);
        if timer_armed() {
            return Err("a CPU profile is already running".into());
        }
        let url = format!("http://{addr}/debug/pprof/profile?seconds={secs}");
        let sent_ns = probe::unix_nanos();
        let request = std::thread::Builder::new()
            .name("bench-profile".into())
            .spawn(move || probe::get(&url).map(|a| a.body))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !timer_armed() {
            if request.is_finished() {
                let answer = request.join().map_err(|_| "the profile request panicked")?;
                return Err(format!(
                    "the CPU profile ended before it sampled: {:?}",
                    answer.map(|b| b.len())
                )
                .into());
            }
            if Instant::now() > deadline {
                return Err("the CPU profile did not start sampling within 20 s".into());
            }
            sleep(Duration::from_millis(1));
        }
        let armed_after_ms = (probe::unix_nanos() - sent_ns) as f64 / 1e6;
        // The agent records the profile's start right after arming the
        // timer and putting its own handler in front; let that happen.
        sleep(Duration::from_millis(20));
        Ok(Running { request, secs, armed_after_ms })
    }
}

/// A profile being taken.
#[derive(Debug)]
pub struct Running {
    request: JoinHandle<Result<Vec<u8>, Error>>,
    secs: u64,
    armed_after_ms: f64,
}

impl Running {
    /// Waits for the profile, reads it, and adds to `out` its sample count
    /// and whether it covered the timed part `[start_ns, end_ns]` (Unix
    /// nanoseconds): `cpu_profile_samples`, `cpu_profile_covered`, …
    pub fn finish(self, start_ns: i64, end_ns: i64, out: &mut Value) -> Result<(), Error> {
        // The timer must still be armed at the end of the timed part; the
        // profile's own times below are the exact check.
        let armed_at_end = timer_armed();
        let body = self.request.join().map_err(|_| "the profile request panicked")??;
        let profile = Summary::read(&body)?;
        let (from, to) = (profile.time_nanos, profile.time_nanos + profile.duration_nanos);
        out["cpu_profile_secs"] = json!(self.secs);
        out["cpu_profile_samples"] = json!(profile.samples);
        out["cpu_profile_covered"] = json!(armed_at_end && from <= start_ns && to >= end_ns);
        // How long before the timed part the profile started, and after it
        // the profile ended (negative: it did not cover that end).
        out["cpu_profile_lead_ms"] = json!((start_ns - from) as f64 / 1e6);
        out["cpu_profile_tail_ms"] = json!((to - end_ns) as f64 / 1e6);
        out["cpu_profile_armed_after_ms"] = json!(self.armed_after_ms);
        Ok(())
    }
}

/// Whether this process's ITIMER_PROF is armed: pprof-rs arms it when a
/// profile starts and disarms it when the profile stops.
fn timer_armed() -> bool {
    let mut value = libc::itimerval {
        it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 },
        it_value: libc::timeval { tv_sec: 0, tv_usec: 0 },
    };
    // SAFETY: `value` is a valid, writable itimerval for the call.
    let rc = unsafe { libc::getitimer(libc::ITIMER_PROF, &mut value) };
    rc == 0 && (value.it_interval.tv_sec != 0 || value.it_interval.tv_usec != 0)
}

/// What the workload checks in a pprof profile.
#[derive(Debug, Default, PartialEq)]
struct Summary {
    /// The sum of every sample's first value (the sample count).
    samples: u64,
    time_nanos: i64,
    duration_nanos: i64,
}

impl Summary {
    /// Reads a pprof profile (gzipped or not): a `Profile` protobuf whose
    /// field 2 is `Sample` (its field 2 the packed values), 9 `time_nanos`
    /// and 10 `duration_nanos`.
    fn read(body: &[u8]) -> Result<Summary, Error> {
        let mut raw = Vec::new();
        let bytes = if body.starts_with(&[0x1f, 0x8b]) {
            flate2::read::GzDecoder::new(body).read_to_end(&mut raw)?;
            &raw[..]
        } else {
            body
        };
        let mut s = Summary::default();
        for field in Fields(bytes) {
            match field? {
                (2, Wire::Bytes(sample)) => {
                    for f in Fields(sample) {
                        match f? {
                            (2, Wire::Bytes(packed)) => {
                                s.samples += Varints(packed).next().transpose()?.unwrap_or(0);
                            }
                            (2, Wire::Varint(v)) => s.samples += v,
                            _ => {}
                        }
                    }
                }
                (9, Wire::Varint(v)) => s.time_nanos = v as i64,
                (10, Wire::Varint(v)) => s.duration_nanos = v as i64,
                _ => {}
            }
        }
        if s.time_nanos == 0 {
            return Err(format!("not a pprof profile ({} bytes): no time_nanos", body.len()).into());
        }
        Ok(s)
    }
}

/// A protobuf field's value, by wire type.
#[derive(Debug)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of a protobuf message: (number, value).
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Wire<'a>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let mut field = || -> Result<(u64, Wire<'a>), Error> {
            let key = varint(&mut self.0)?;
            let value = match key & 7 {
                0 => Wire::Varint(varint(&mut self.0)?),
                1 | 5 => {
                    let n = if key & 7 == 1 { 8 } else { 4 };
                    self.0 = self.0.get(n..).ok_or("truncated protobuf")?;
                    Wire::Fixed
                }
                2 => {
                    let n = varint(&mut self.0)? as usize;
                    let bytes = self.0.get(..n).ok_or("truncated protobuf")?;
                    self.0 = &self.0[n..];
                    Wire::Bytes(bytes)
                }
                t => return Err(format!("protobuf wire type {t} unexpected").into()),
            };
            Ok((key >> 3, value))
        };
        let item = field();
        if item.is_err() {
            self.0 = &[];
        }
        Some(item)
    }
}

/// The varints of a packed field.
struct Varints<'a>(&'a [u8]);

impl Iterator for Varints<'_> {
    type Item = Result<u64, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        (!self.0.is_empty()).then(|| varint(&mut self.0))
    }
}

fn varint(bytes: &mut &[u8]) -> Result<u64, Error> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first().ok_or("truncated protobuf varint")?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("protobuf varint too long".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
        put_varint(out, field << 3 | 2);
        put_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    #[test]
    fn reads_samples_and_times_of_a_gzipped_profile() {
        let mut sample = Vec::new();
        put_bytes(&mut sample, 1, &[1, 2]); // location ids
        let mut values = Vec::new();
        put_varint(&mut values, 3);
        put_varint(&mut values, 30_303_030);
        put_bytes(&mut sample, 2, &values);
        let mut profile = Vec::new();
        put_bytes(&mut profile, 6, b"cpu"); // a string table entry
        put_bytes(&mut profile, 2, &sample);
        put_bytes(&mut profile, 2, &sample);
        put_varint(&mut profile, 9 << 3);
        put_varint(&mut profile, 1_700_000_000_000_000_000);
        put_varint(&mut profile, 10 << 3);
        put_varint(&mut profile, 2_000_000_000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &profile).unwrap();
        let s = Summary::read(&gz.finish().unwrap()).unwrap();
        assert_eq!(
            s,
            Summary { samples: 6, time_nanos: 1_700_000_000_000_000_000, duration_nanos: 2_000_000_000 }
        );
        assert!(Summary::read(b"not a profile").is_err());
    }
}
