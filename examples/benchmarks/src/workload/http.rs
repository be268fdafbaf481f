//! http: an axum hello-world on the app's runtime, on 127.0.0.1 (port 0),
//! loaded by `wrk` (2 threads, `connections` connections, `--latency`) for
//! `secs` seconds. Reports wrk's requests per second and latency
//! percentiles, and the server process's CPU time per request (wrk's own
//! CPU is another process's). wrk is always waited for, and killed if it
//! outlives its deadline or the run fails.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{probe, App, Error};

/// The body the server answers.
const HELLO: &str = "Hello, World!";

pub fn run(app: &App, secs: u64, connections: usize) -> Result<Value, Error> {
    let listener = app.rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let router = axum::Router::new().route("/", axum::routing::get(|| async { HELLO }));
    let server = app.rt.spawn(async move { axum::serve(listener, router).await });
    let url = format!("http://{addr}/");
    let answer = probe::get(&url)?;
    if answer.body != HELLO.as_bytes() {
        return Err(format!("the server answered {:?}", String::from_utf8_lossy(&answer.body)).into());
    }

    let cpu = probe::cpu_secs();
    let begin = Instant::now();
    let output = wrk(&url, secs, connections)?;
    let wall = begin.elapsed().as_secs_f64();
    let cpu_secs = probe::cpu_secs() - cpu;
    server.abort();

    let report = Report::parse(&output).map_err(|e| format!("{e}; wrk printed:\n{output}"))?;
    Ok(json!({
        "secs": wall,
        "cpu_secs": cpu_secs,
        "http_secs": secs,
        "connections": connections,
        "wrk_threads": 2,
        "requests": report.requests,
        "requests_per_sec": report.requests_per_sec,
        "p50_ms": report.p50_ms,
        "p90_ms": report.p90_ms,
        "p99_ms": report.p99_ms,
        "errors": report.errors,
        "cpu_us_per_request": cpu_secs * 1e6 / report.requests.max(1) as f64,
    }))
}

/// Runs wrk to its end and returns what it printed on stdout.
fn wrk(url: &str, secs: u64, connections: usize) -> Result<String, Error> {
    let child = Command::new("wrk")
        .args(["-t2", &format!("-c{connections}"), &format!("-d{secs}s"), "--latency", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run wrk ({e}): install it, e.g. `apt-get install wrk`"))?;
    let mut child = Reaped(child);
    // wrk prints a few hundred bytes, far less than a pipe holds, so it
    // never blocks on its output before it exits.
    let deadline = Instant::now() + Duration::from_secs(secs + 30);
    let status = loop {
        if let Some(status) = child.0.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            return Err(format!("wrk did not finish within {} s; killed", secs + 30).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    if let Some(out) = child.0.stdout.as_mut() {
        out.read_to_string(&mut stdout)?;
    }
    if let Some(err) = child.0.stderr.as_mut() {
        err.read_to_string(&mut stderr)?;
    }
    if !status.success() {
        return Err(format!("wrk failed ({status}): {stderr}{stdout}").into());
    }
    Ok(stdout)
}

/// A child process that is killed and waited for when dropped, however the
/// run ends (an error or a panic).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// What the runner keeps of wrk's output.
#[derive(Debug, PartialEq)]
struct Report {
    requests: u64,
    requests_per_sec: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    /// Socket errors (connect, read, write, timeout) and non-2xx/3xx answers.
    errors: u64,
}

impl Report {
    fn parse(out: &str) -> Result<Report, Error> {
        let mut requests = None;
        let mut rps = None;
        let mut pct = [None; 3];
        let mut errors = 0;
        for line in out.lines().map(str::trim) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["Requests/sec:", n] => rps = n.parse().ok(),
                [n, "requests", "in", ..] => requests = n.parse().ok(),
                [p @ ("50%" | "90%" | "99%"), t] => {
                    let i = ["50%", "90%", "99%"].iter().position(|x| x == p).unwrap_or(0);
                    pct[i] = Some(millis(t)?);
                }
                ["Socket", "errors:", rest @ ..] => {
                    errors +=
                        rest.iter().filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok()).sum::<u64>();
                }
                ["Non-2xx", "or", "3xx", "responses:", n] => errors += n.parse::<u64>().unwrap_or(0),
                _ => {}
            }
        }
        let [Some(p50_ms), Some(p90_ms), Some(p99_ms)] = pct else {
            return Err("no latency distribution in wrk's output (--latency)".into());
        };
        Ok(Report {
            requests: requests.ok_or("no request count in wrk's output")?,
            requests_per_sec: rps.ok_or("no Requests/sec in wrk's output")?,
            p50_ms,
            p90_ms,
            p99_ms,
            errors,
        })
    }
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.00s`, `1.50m`.
fn millis(t: &str) -> Result<f64, Error> {
    let split = t.find(|c: char| c.is_ascii_alphabetic()).ok_or_else(|| format!("no unit in {t:?}"))?;
    let (n, unit) = t.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("not a duration: {t:?}"))?;
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return Err(format!("unknown unit in {t:?}").into()),
    };
    Ok(n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "Running 1s test @ http://127.0.0.1:40123/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  512.33us  12.10ms   90.12%
    Req/Sec    24.51k     1.20k   26.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.10ms
     90%    1.50ms
     99%    3.20ms
  48770 requests in 1.00s, 6.05MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  48712.34
Transfer/sec:      6.04MB
";

    #[test]
    fn parses_wrk_output() {
        let r = Report::parse(OUT).unwrap();
        assert_eq!(
            r,
            Report {
                requests: 48770,
                requests_per_sec: 48712.34,
                p50_ms: 0.812,
                p90_ms: 1.5,
                p99_ms: 3.2,
                errors: 7
            }
        );
        assert!(Report::parse("Requests/sec: 1.0").is_err());
        assert_eq!(millis("2.00s").unwrap(), 2000.0);
    }
}
