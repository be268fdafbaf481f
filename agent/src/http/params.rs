//! Query parameters, validated: anything unexpected is a 400 with a reason.

use super::error::HttpError;
use crate::render::flamegraph::FlamegraphOptions;
use crate::render::heap::SampleType;
use crate::render::json::{SortKey, TaskQuery, NO_WAIT};
use crate::snapshot::State;

/// The most task ids one `id` parameter may list.
const MAX_IDS: usize = 1_000;

/// The parsed query string of a request.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(raw: Option<&str>) -> Result<Self, HttpError> {
        let raw = raw.unwrap_or("");
        serde_urlencoded::from_str::<Vec<(String, String)>>(raw)
            .map(Params)
            .map_err(|e| HttpError::bad_request(format!("malformed query string: {e}")))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn number(&self, name: &str, max: u64) -> Result<Option<u64>, HttpError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if n <= max => Ok(Some(n)),
                _ => Err(HttpError::bad_request(format!(
                    "invalid {name}={v:?}: want a whole number from 0 to {max}"
                ))),
            },
        }
    }

    /// `debug`: 0 (binary profile, the default), 1 or 2 (text).
    pub(crate) fn debug(&self) -> Result<u8, HttpError> {
        match self.get("debug") {
            None | Some("") | Some("0") => Ok(0),
            Some("1") => Ok(1),
            Some("2") => Ok(2),
            Some(v) => Err(HttpError::bad_request(format!("invalid debug={v:?}: want 0, 1 or 2"))),
        }
    }

    /// `seconds`, the length of a profile: a whole number from 1 to `max`.
    /// Absent or empty, Go's default of 30 (or `max` if lower).
    pub(crate) fn seconds(&self, max: u64) -> Result<u64, HttpError> {
        match self.get("seconds").map(str::trim) {
            None | Some("") => Ok(crate::cpu::DEFAULT_SECONDS.min(max)),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(HttpError::bad_request(format!(
                    "invalid seconds={v:?}: want a whole number of seconds from 1 to {max}"
                ))),
            },
        }
    }

    /// `seconds` of a delta profile (heap, allocs): absent for none, else a
    /// whole number from 1 to `max`.
    pub(crate) fn delta_seconds(&self, max: u64) -> Result<Option<u64>, HttpError> {
        match self.get("seconds").map(str::trim) {
            None | Some("") => Ok(None),
            Some(_) => self.seconds(max).map(Some),
        }
    }

    /// `sample`, the value a heap flamegraph shows (default `inuse_space`).
    pub(crate) fn heap_sample(&self) -> Result<SampleType, HttpError> {
        match self.get("sample").map(str::trim) {
            None | Some("") => Ok(SampleType::default()),
            Some(v) => SampleType::parse(v).ok_or_else(|| {
                HttpError::bad_request(format!("invalid sample={v:?}: want one of {}", SampleType::NAMES))
            }),
        }
    }

    /// The drawing options of a flamegraph: `width` (pixels), `minwidth`
    /// (percent of the total, an optional `%` allowed), `reverse`, `icicle`.
    pub(crate) fn flamegraph(&self) -> Result<FlamegraphOptions, HttpError> {
        let mut options = FlamegraphOptions::default();
        if let Some(v) = self.get("width").map(str::trim).filter(|v| !v.is_empty()) {
            options.width = Some(match v.parse::<usize>() {
                Ok(n) if (100..=100_000).contains(&n) => n,
                _ => {
                    return Err(HttpError::bad_request(format!(
                        "invalid width={v:?}: want a whole number of pixels from 100 to 100000"
                    )))
                }
            });
        }
        if let Some(v) = self.get("minwidth").map(str::trim).filter(|v| !v.is_empty()) {
            options.min_width_percent = match v.trim_end_matches('%').parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => p,
                _ => {
                    return Err(HttpError::bad_request(format!(
                        "invalid minwidth={v:?}: want a percentage of the total from 0 to 100, e.g. 0.5"
                    )))
                }
            };
        }
        options.reverse = self.flag("reverse")?;
        options.icicle = self.flag("icicle")?;
        Ok(options)
    }

    /// A yes/no parameter: `1`/`true` or `0`/`false`; absent is no.
    fn flag(&self, name: &str) -> Result<bool, HttpError> {
        match self.get(name).map(str::trim) {
            None | Some("") | Some("0") | Some("false") => Ok(false),
            Some("1") | Some("true") => Ok(true),
            Some(v) => Err(HttpError::bad_request(format!("invalid {name}={v:?}: want 1 or 0"))),
        }
    }

    /// The task selection of the snapshot API.
    pub(crate) fn task_query(&self) -> Result<TaskQuery, HttpError> {
        let sort = match self.get("sort") {
            None | Some("") => SortKey::default(),
            Some(v) => SortKey::parse(v).ok_or_else(|| {
                HttpError::bad_request(format!("invalid sort={v:?}: want one of {}", SortKey::NAMES))
            })?,
        };
        let descending = match self.get("order") {
            None | Some("") => None,
            Some("asc") => Some(false),
            Some("desc") => Some(true),
            Some(v) => return Err(HttpError::bad_request(format!("invalid order={v:?}: want asc or desc"))),
        };
        let state = match self.get("state") {
            None | Some("") => None,
            Some("idle") => Some(State::Idle),
            Some("running") => Some(State::Running),
            Some(v) => {
                return Err(HttpError::bad_request(format!("invalid state={v:?}: want idle or running")))
            }
        };
        Ok(TaskQuery {
            sort,
            descending,
            offset: self.number("offset", u32::MAX as u64)?.unwrap_or(0) as usize,
            limit: self.number("limit", u32::MAX as u64)?.map(|n| n as usize),
            state,
            site: self.number("site", u32::MAX as u64)?.map(|n| n as u32),
            wait: self.wait()?,
            ids: self.ids()?,
            min_idle_ms: self.number("min_idle", 1_000_000_000_000)?,
            min_polls: self.number("min_polls", 1_000_000_000_000)?,
            max_polls: self.number("max_polls", 1_000_000_000_000)?,
        })
    }

    /// `wait`: a wait reason as the JSON spells it (`chan receive`), or
    /// `none` for tasks without one. The reasons are an open set, so only
    /// their shape is checked.
    fn wait(&self) -> Result<Option<String>, HttpError> {
        match self.get("wait").map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) if v.len() <= 40 && v.bytes().all(|b| b.is_ascii_lowercase() || b == b' ') => {
                Ok(Some(v.to_string()))
            }
            Some(v) => Err(HttpError::bad_request(format!(
                "invalid wait={v:?}: want a wait reason as the JSON names it, e.g. chan receive, or {NO_WAIT}"
            ))),
        }
    }

    /// `id`: task ids, comma-separated, at most [`MAX_IDS`].
    fn ids(&self) -> Result<Option<Vec<u64>>, HttpError> {
        let Some(v) = self.get("id").map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
        let ids: Option<Vec<u64>> = v.split(',').map(|id| id.trim().parse().ok()).collect();
        match ids {
            Some(ids) if ids.len() <= MAX_IDS => Ok(Some(ids)),
            _ => Err(HttpError::bad_request(format!(
                "invalid id={v:?}: want task ids separated by commas, at most {MAX_IDS}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(q: &str) -> Params {
        Params::parse(Some(q)).unwrap()
    }

    #[test]
    fn debug_takes_0_1_2_and_nothing_else() {
        assert_eq!(p("").debug().unwrap(), 0);
        assert_eq!(p("debug=1").debug().unwrap(), 1);
        assert_eq!(p("debug=2").debug().unwrap(), 2);
        for bad in ["debug=3", "debug=-1", "debug=x", "debug=1.0"] {
            let e = p(bad).debug().unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert!(e.reason.contains("want 0, 1 or 2"), "{}", e.reason);
        }
    }

    #[test]
    fn task_queries_are_validated() {
        let q = p("sort=idle&limit=10&offset=5&state=idle&site=3").task_query().unwrap();
        assert_eq!(q.sort, SortKey::Idle);
        assert_eq!((q.limit, q.offset, q.site), (Some(10), 5, Some(3)));
        assert_eq!(q.state, Some(State::Idle));
        for (bad, why) in [
            ("sort=colour", "want one of"),
            ("limit=-1", "whole number"),
            ("limit=99999999999", "whole number"),
            ("offset=abc", "whole number"),
            ("order=up", "asc or desc"),
            ("state=asleep", "idle or running"),
        ] {
            let e = p(bad).task_query().unwrap_err();
            assert!(e.reason.contains(why), "{bad}: {}", e.reason);
        }
    }

    #[test]
    fn wait_and_id_filters_are_validated() {
        let q = p("wait=chan+receive&id=3,%204,5").task_query().unwrap();
        assert_eq!((q.wait.as_deref(), q.ids), (Some("chan receive"), Some(vec![3, 4, 5])));
        let q = p("wait=none&id=").task_query().unwrap();
        assert_eq!((q.wait.as_deref(), q.ids), (Some("none"), None));
        let q = p("min_idle=60000&min_polls=1&max_polls=3").task_query().unwrap();
        assert_eq!((q.min_idle_ms, q.min_polls, q.max_polls), (Some(60_000), Some(1), Some(3)));
        let many = format!("id={}", vec!["1"; 1_001].join(","));
        for (bad, why) in [
            ("wait=Chan", "want a wait reason"),
            ("wait=%3Cscript%3E", "want a wait reason"),
            ("id=1,,2", "task ids separated by commas"),
            ("id=-1", "task ids separated by commas"),
            ("id=x", "task ids separated by commas"),
            (many.as_str(), "at most 1000"),
            ("min_idle=5s", "whole number"),
            ("min_polls=-1", "whole number"),
            ("max_polls=1.5", "whole number"),
        ] {
            let e = p(bad).task_query().unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert!(e.reason.contains(why) && !e.reason.contains('\n'), "{bad}: {}", e.reason);
        }
    }

    #[test]
    fn seconds_are_whole_and_bounded() {
        assert_eq!(p("").seconds(300).unwrap(), 30);
        assert_eq!(p("seconds=").seconds(300).unwrap(), 30);
        assert_eq!(p("").seconds(10).unwrap(), 10, "the default never exceeds the maximum");
        assert_eq!(p("seconds=2").seconds(300).unwrap(), 2);
        assert_eq!(p("seconds=300").seconds(300).unwrap(), 300);
        for bad in ["seconds=0", "seconds=-1", "seconds=abc", "seconds=301", "seconds=1.5", "seconds=1e3"] {
            let e = p(bad).seconds(300).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert!(e.reason.contains("from 1 to 300"), "{bad}: {}", e.reason);
        }
    }

    #[test]
    fn heap_deltas_and_samples_are_validated() {
        assert_eq!(p("").delta_seconds(300).unwrap(), None);
        assert_eq!(p("seconds=5").delta_seconds(300).unwrap(), Some(5));
        for bad in ["seconds=0", "seconds=-3", "seconds=x", "seconds=301"] {
            let e = p(bad).delta_seconds(300).unwrap_err();
            assert!(e.status == 400 && e.reason.contains("from 1 to 300"), "{bad}: {}", e.reason);
        }
        assert_eq!(p("").heap_sample().unwrap(), SampleType::InuseSpace);
        assert_eq!(p("sample=alloc_objects").heap_sample().unwrap(), SampleType::AllocObjects);
        let e = p("sample=space").heap_sample().unwrap_err();
        assert!(e.reason.contains("want one of inuse_space"), "{}", e.reason);
    }

    #[test]
    fn flamegraph_options_are_validated() {
        let o = p("width=800&minwidth=0.5%25&reverse=1&icicle=true").flamegraph().unwrap();
        assert_eq!((o.width, o.min_width_percent, o.reverse, o.icicle), (Some(800), 0.5, true, true));
        let o = p("").flamegraph().unwrap();
        assert_eq!((o.width, o.reverse, o.icicle), (None, false, false));
        for (bad, why) in [
            ("width=10", "from 100"),
            ("width=wide", "from 100"),
            ("minwidth=-1", "percentage"),
            ("minwidth=101", "percentage"),
            ("minwidth=NaN", "percentage"),
            ("reverse=yes", "want 1 or 0"),
            ("icicle=2", "want 1 or 0"),
        ] {
            let e = p(bad).flamegraph().unwrap_err();
            assert!(e.reason.contains(why), "{bad}: {}", e.reason);
        }
    }

    #[test]
    fn malformed_query_strings_are_rejected_not_panicked_on() {
        let e = Params::parse(Some("debug=%ZZ&&=")).map(|p| p.debug());
        // serde_urlencoded is lenient with stray percent signs; either a
        // clean parse or a clean 400 is fine, never a panic.
        if let Ok(Err(e)) = e {
            assert_eq!(e.status, 400);
        }
    }
}
