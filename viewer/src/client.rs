//! The client of an agent's HTTP endpoint: turns whatever address the user
//! typed into the agent's base URL, sends the bearer token, and turns every
//! way a request can fail (nothing listening, not an agent, 401, a 4xx with
//! the agent's one-line reason) into a one-line error that says what to do.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::model::Snapshot;

/// The path of the snapshot API, under the agent's base.
pub const SNAPSHOT_PATH: &str = "/debug/taskscope/api/snapshot";

/// The port of a bare `host` with neither scheme nor port (the agent's default).
const DEFAULT_PORT: u16 = 6060;

/// An agent's base URL: `http://host:port`, plus the prefix when the app
/// mounts taskscope's router under a path of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentUrl(String);

impl AgentUrl {
    /// Accepts `127.0.0.1:6060`, `http://127.0.0.1:6060`, a URL of any of the
    /// agent's pages (`…/debug/pprof/heap?seconds=5`), or one under a mount
    /// prefix (`http://host/admin/debug/pprof/`).
    pub fn parse(input: &str) -> Result<AgentUrl> {
        let text = input.trim();
        if text.is_empty() {
            bail!("the agent URL is empty: give one like http://127.0.0.1:6060");
        }
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
            None => (None, text),
        };
        match scheme.as_deref() {
            None | Some("http") => {}
            Some("https") => bail!(
                "{text}: https is not supported; taskscope's agent speaks plain http on loopback (use an ssh tunnel to reach a remote one)"
            ),
            Some(other) => bail!("{text}: unsupported scheme {other:?}; want http://host:port"),
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
            bail!("{text}: not a host:port; want e.g. http://127.0.0.1:6060");
        }
        let has_port = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                if host.is_empty() || port.parse::<u16>().is_err() {
                    bail!("{text}: invalid port {port:?}; want e.g. http://127.0.0.1:6060");
                }
                true
            }
            _ => false,
        };
        let authority = if has_port || scheme.is_some() {
            authority.to_string()
        } else {
            format!("{authority}:{DEFAULT_PORT}")
        };
        let path = path.split(['?', '#']).next().unwrap_or("");
        let prefix = match path.find("/debug/") {
            Some(i) => &path[..i],
            None => path.strip_suffix("/debug").unwrap_or(path),
        };
        Ok(AgentUrl(format!("http://{authority}{}", prefix.trim_end_matches('/'))))
    }

    /// `path` (with its query) under the base.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }

    #[cfg(test)]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AgentUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A response body.
#[derive(Debug)]
pub struct Body {
    pub bytes: Vec<u8>,
}

/// A client of one agent.
#[derive(Debug, Clone)]
pub struct Client {
    url: AgentUrl,
    token: Option<String>,
    http: ureq::Agent,
}

impl Client {
    pub fn new(url: AgentUrl, token: Option<String>) -> Client {
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A debug endpoint on loopback: never through a proxy from the environment.
            .proxy(None)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(60)))
            .user_agent(concat!("taskscope/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Client { url, token: token.filter(|t| !t.is_empty()), http }
    }

    pub fn url(&self) -> &AgentUrl {
        &self.url
    }

    /// GETs `path` (with its query); any answer but 200 is an error that
    /// carries the agent's reason. `wait` is how long the agent may take
    /// (a CPU profile takes its `seconds`).
    pub fn get(&self, path: &str, wait: Duration) -> Result<Body> {
        let url = self.url.join(path);
        let mut request = self.http.get(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = request
            .config()
            .timeout_global(Some(wait + Duration::from_secs(30)))
            .build()
            .call()
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .map_err(|e| anyhow!("reading the answer to GET {url} failed: {}", describe(&e)))?;
        if status.is_success() {
            return Ok(Body { bytes });
        }
        let reason = first_line(&bytes);
        Err(match status.as_u16() {
            401 if self.token.is_none() => {
                anyhow!("the agent at {} wants a token (401): pass --token or set TASKSCOPE_TOKEN", self.url)
            }
            401 => {
                anyhow!("the agent at {} refused the token (401): check --token or TASKSCOPE_TOKEN", self.url)
            }
            404 => anyhow!(
                "{} is not a taskscope agent: GET {} answered 404",
                self.url,
                path.split('?').next().unwrap_or(path)
            ),
            code => {
                let reason = if reason.is_empty() { String::new() } else { format!(": {reason}") };
                anyhow!("the agent at {} answered {code} to GET {path}{reason}", self.url)
            }
        })
    }

    /// The snapshot, with `query` (e.g. `limit=100&sort=idle`) selecting tasks.
    pub fn snapshot(&self, query: &str) -> Result<(Snapshot, Vec<u8>)> {
        let path =
            if query.is_empty() { SNAPSHOT_PATH.to_string() } else { format!("{SNAPSHOT_PATH}?{query}") };
        let body = self.get(&path, Duration::from_secs(30))?;
        let snapshot = Snapshot::parse(&body.bytes).with_context(|| {
            format!("{} is not a taskscope agent: GET {SNAPSHOT_PATH} answered with something else", self.url)
        })?;
        Ok((snapshot, body.bytes))
    }

    /// A text page (`tasks?debug=2`, `findings`).
    pub fn text(&self, path: &str) -> Result<String> {
        let body = self.get(path, Duration::from_secs(30))?;
        String::from_utf8(body.bytes)
            .map_err(|_| anyhow!("GET {path} from {} answered with bytes that are not text", self.url))
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        anyhow!(
            "cannot reach the agent at {}: {} (is the app running with taskscope, at this address?)",
            self.url,
            describe(&e)
        )
    }
}

/// A transport error in a few words.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
            std::io::ErrorKind::ConnectionReset => "connection reset".to_string(),
            std::io::ErrorKind::TimedOut => "timed out".to_string(),
            _ => io.to_string(),
        },
        ureq::Error::Timeout(_) => "timed out".to_string(),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::Protocol(_) => "it does not speak HTTP".to_string(),
        other => other.to_string(),
    }
}

/// The first line of an error body, trimmed to a sentence's length.
fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    if line.starts_with('<') {
        // An HTML error page says nothing useful in one line.
        return String::new();
    }
    line.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_normalize_to_the_agent_base() {
        for (input, want) in [
            ("127.0.0.1:6060", "http://127.0.0.1:6060"),
            ("http://127.0.0.1:6060", "http://127.0.0.1:6060"),
            ("http://127.0.0.1:6060/", "http://127.0.0.1:6060"),
            ("HTTP://localhost:6060/debug/pprof/", "http://localhost:6060"),
            ("http://127.0.0.1:6060/debug/pprof/heap?seconds=5", "http://127.0.0.1:6060"),
            ("127.0.0.1:6060/debug/taskscope/api/snapshot", "http://127.0.0.1:6060"),
            ("http://host:8080/admin/debug/pprof/", "http://host:8080/admin"),
            ("http://host:8080/admin/", "http://host:8080/admin"),
            ("http://host:8080/admin/debug", "http://host:8080/admin"),
            ("localhost", "http://localhost:6060"),
            ("http://localhost", "http://localhost"),
            ("[::1]:6060", "http://[::1]:6060"),
            ("  127.0.0.1:6060\n", "http://127.0.0.1:6060"),
        ] {
            assert_eq!(AgentUrl::parse(input).unwrap().as_str(), want, "{input}");
        }
    }

    #[test]
    fn bad_addresses_are_refused_in_one_line() {
        for (input, why) in [
            ("", "empty"),
            ("https://127.0.0.1:6060", "https is not supported"),
            ("ftp://x:1", "unsupported scheme"),
            ("http:///debug/pprof/", "not a host:port"),
            ("127.0.0.1:port", "invalid port"),
            ("127.0.0.1:99999", "invalid port"),
            ("user@host:1", "not a host:port"),
        ] {
            let e = AgentUrl::parse(input).unwrap_err().to_string();
            assert!(e.contains(why) && !e.contains('\n'), "{input}: {e}");
        }
    }

    #[test]
    fn nothing_listening_is_one_clear_line() {
        // Port 1 on loopback: nothing listens there, the connect is refused.
        let client = Client::new(AgentUrl::parse("127.0.0.1:1").unwrap(), None);
        let e = format!("{:#}", client.snapshot("").unwrap_err());
        assert_eq!(
            e,
            "cannot reach the agent at http://127.0.0.1:1: connection refused (is the app running with taskscope, at this address?)"
        );
    }

    #[test]
    fn error_bodies_give_their_first_line() {
        assert_eq!(
            first_line(b"\ninvalid seconds=\"0\": want 1 to 300\nmore"),
            "invalid seconds=\"0\": want 1 to 300"
        );
        assert_eq!(first_line(b"<html><body>404</body></html>"), "");
        assert_eq!(first_line(&[b'x'; 500]).len(), 200);
    }
}
