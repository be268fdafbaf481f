//! The web viewer: the files of `assets/` at the repository root (HTML, CSS
//! and ES modules, no build step, nothing from a CDN), embedded in the binary
//! and served at `/debug/taskscope/`. `agent/assets` links to them so that
//! the crate packages them.
//!
//! Caching: `index.html` is served with `Cache-Control: no-cache` and an
//! ETag, so browsers revalidate it on every load. It names the other files
//! under `static/<version>/`, where the version is a hash of every file, so
//! those are served as immutable: a new build changes the path, never the
//! content behind a cached one.
//!
//! Authentication: the files are served without the bearer token. They hold
//! no data, and every data endpoint (the snapshot API, the profiles) still
//! requires it; the page asks for the token after the first 401 and keeps it
//! in sessionStorage (`assets/source.js`).
//!
//! Offline mode, for saved snapshots: `index.html?snapshot=<url>` makes the
//! page fetch that URL once, instead of the API, and show it read-only (no
//! refresh, no profiles). A server of saved snapshots (`taskscope serve`)
//! serves these files through [`get`] and the snapshot's JSON next to them,
//! and sends browsers to `./?snapshot=<the JSON's path>`.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get as route_get;
use axum::Router;

use super::{AppState, HttpError};

/// The embedded files, by name.
const FILES: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../../assets/index.html")),
    ("style.css", include_bytes!("../../assets/style.css")),
    ("app.js", include_bytes!("../../assets/app.js")),
    ("dom.js", include_bytes!("../../assets/dom.js")),
    ("format.js", include_bytes!("../../assets/format.js")),
    ("highlight.js", include_bytes!("../../assets/highlight.js")),
    ("query.js", include_bytes!("../../assets/query.js")),
    ("source.js", include_bytes!("../../assets/source.js")),
    ("sparkline.js", include_bytes!("../../assets/sparkline.js")),
    ("views/cpu.js", include_bytes!("../../assets/views/cpu.js")),
    ("views/embed.js", include_bytes!("../../assets/views/embed.js")),
    ("views/heap.js", include_bytes!("../../assets/views/heap.js")),
    ("views/overview.js", include_bytes!("../../assets/views/overview.js")),
    ("views/sites.js", include_bytes!("../../assets/views/sites.js")),
    ("views/stack.js", include_bytes!("../../assets/views/stack.js")),
    ("views/tasks.js", include_bytes!("../../assets/views/tasks.js")),
    ("views/workers.js", include_bytes!("../../assets/views/workers.js")),
];

/// What `index.html` says where the version goes.
const VERSION_MARK: &str = "__VERSION__";

/// For the files under `static/<version>/`: a year, and never revalidated.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// For `index.html`, and for files asked for under another version.
const REVALIDATE: &str = "no-cache";

/// The version of the viewer: a hash (FNV-1a) of every file's name and bytes.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (name, bytes) in FILES {
            for &b in name.as_bytes().iter().chain([0u8].iter()).chain(bytes.iter()) {
                hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{:012x}", hash >> 16)
    })
}

/// `index.html`, naming its files under `static/<version>/`.
fn index() -> &'static [u8] {
    static INDEX: OnceLock<Vec<u8>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let html = std::str::from_utf8(FILES[0].1).unwrap_or_default();
        html.replace(VERSION_MARK, version()).into_bytes()
    })
}

/// The names of the embedded files (`index.html`, `app.js`, `views/tasks.js`, ...).
pub fn list() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(name, _)| *name)
}

/// The content type of a file, by its extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// The file `path` names, relative to the viewer's root: `""` or
/// `index.html` for the page, `static/<version>/<name>` as the page asks for
/// the others (any version), or a bare name. With its content type.
pub fn get(path: &str) -> Option<(&'static [u8], &'static str)> {
    let name = name_of(path)?;
    if name == "index.html" {
        return Some((index(), content_type(name)));
    }
    FILES.iter().find(|(n, _)| *n == name).map(|(n, bytes)| (*bytes, content_type(n)))
}

/// The `Cache-Control` that suits `path` (as for [`get`]).
pub fn cache_control(path: &str) -> &'static str {
    match path.trim_start_matches('/').strip_prefix("static/").and_then(|p| p.split_once('/')) {
        Some((v, _)) if v == version() => IMMUTABLE,
        _ => REVALIDATE,
    }
}

fn name_of(path: &str) -> Option<&str> {
    let path = path.trim_start_matches('/');
    match path {
        "" | "index.html" => Some("index.html"),
        _ => match path.strip_prefix("static/") {
            Some(rest) => rest.split_once('/').map(|(_, name)| name),
            None => Some(path),
        },
    }
}

/// The viewer's routes; the router mounts them outside the token guard.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/debug/taskscope", route_get(|| async { Redirect::permanent("/debug/taskscope/") }))
        .route("/debug/taskscope/", route_get(page))
        .route("/debug/taskscope/index.html", route_get(page))
        .route("/debug/taskscope/static/{version}/{*file}", route_get(file))
}

async fn page(headers: HeaderMap) -> Response {
    let etag = format!("\"{}\"", version());
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let caching = [(header::CACHE_CONTROL, REVALIDATE.to_string()), (header::ETAG, etag)];
    if cached {
        return (StatusCode::NOT_MODIFIED, caching).into_response();
    }
    let mut r = (caching, index()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type("index.html")));
    r
}

async fn file(Path((v, name)): Path<(String, String)>) -> Response {
    let path = format!("static/{v}/{name}");
    match get(&path).filter(|_| name != "index.html") {
        Some((bytes, kind)) => {
            ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, cache_control(&path))], bytes)
                .into_response()
        }
        None => HttpError::not_found(format!("not found: the viewer has no file {name:?}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::http::Shared;

    async fn fetch(uri: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
        let shared = Shared { token: Some("sesame".into()), ..Shared::default() };
        let mut req = Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res =
            crate::http::router(Arc::new(shared)).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = res.into_parts();
        (parts.status, parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn the_page_is_revalidated_and_names_its_files_by_version() {
        run(async {
            let (status, headers, body) = fetch("/debug/taskscope/", &[]).await;
            assert_eq!(status, 200, "served without the token: it holds no data");
            assert_eq!(headers["content-type"], "text/html; charset=utf-8");
            assert_eq!(headers["cache-control"], "no-cache");
            assert_eq!(headers["x-content-type-options"], "nosniff");
            let etag = headers["etag"].to_str().unwrap().to_string();
            assert_eq!(etag, format!("\"{}\"", version()));
            let html = String::from_utf8(body).unwrap();
            assert!(html.contains(&format!("src=\"static/{}/app.js\"", version())), "{html}");
            assert!(!html.contains(VERSION_MARK));

            let (status, headers, body) = fetch("/debug/taskscope/", &[("if-none-match", &etag)]).await;
            assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));
            assert_eq!(headers["etag"], etag.as_str());

            let (status, headers, _) = fetch("/debug/taskscope", &[]).await;
            assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
            assert_eq!(headers["location"], "/debug/taskscope/");
        });
    }

    #[test]
    fn files_are_immutable_under_their_version_with_their_content_type() {
        run(async {
            for (name, kind) in [
                ("app.js", "text/javascript; charset=utf-8"),
                ("views/tasks.js", "text/javascript; charset=utf-8"),
                ("style.css", "text/css; charset=utf-8"),
            ] {
                let (status, headers, body) =
                    fetch(&format!("/debug/taskscope/static/{}/{name}", version()), &[]).await;
                assert_eq!(status, 200, "{name}");
                assert_eq!(headers["content-type"], kind, "{name}");
                assert_eq!(headers["cache-control"], IMMUTABLE, "{name}");
                assert_eq!(headers["x-content-type-options"], "nosniff");
                assert_eq!(body, get(name).unwrap().0);
            }
            // A page from an older build still loads, but nothing is cached for long.
            let (status, headers, _) = fetch("/debug/taskscope/static/0123/app.js", &[]).await;
            assert_eq!(
                (status, &headers["cache-control"]),
                (StatusCode::OK, &HeaderValue::from_static("no-cache"))
            );
            let (status, _, body) =
                fetch(&format!("/debug/taskscope/static/{}/nope.js", version()), &[]).await;
            assert_eq!(status, 404);
            assert_eq!(body, b"not found: the viewer has no file \"nope.js\"\n");
        });
    }

    #[test]
    fn data_still_requires_the_token() {
        run(async {
            let (status, _, _) = fetch("/debug/taskscope/api/snapshot?limit=0", &[]).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            let (status, headers, _) =
                fetch("/debug/taskscope/api/snapshot?limit=0", &[("authorization", "Bearer sesame")]).await;
            assert_eq!(
                (status, &headers["content-type"]),
                (StatusCode::OK, &HeaderValue::from_static("application/json"))
            );
        });
    }

    #[test]
    fn get_resolves_every_form_of_path() {
        let v = version();
        assert_eq!(get("").unwrap().0, index());
        assert_eq!(get("/index.html").unwrap().1, "text/html; charset=utf-8");
        assert_eq!(get(&format!("static/{v}/highlight.js")).unwrap().0, get("highlight.js").unwrap().0);
        assert!(get("static/app.js").is_none());
        assert!(get("../Cargo.toml").is_none());
        assert_eq!(cache_control(&format!("/static/{v}/app.js")), IMMUTABLE);
        assert_eq!(cache_control("index.html"), REVALIDATE);
        assert_eq!(list().next(), Some("index.html"));
    }

    /// Every file of `assets/` the page needs is embedded, and every module
    /// import names an embedded file.
    #[test]
    fn every_asset_and_import_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut on_disk = Vec::new();
        for dir in ["", "views"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if [".html", ".css", ".js"].iter().any(|e| name.ends_with(e)) {
                    on_disk.push(if dir.is_empty() { name } else { format!("{dir}/{name}") });
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<_> = list().map(String::from).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "add new files of assets/ to FILES");

        for (name, bytes) in FILES.iter().filter(|(n, _)| n.ends_with(".js")) {
            let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
            for import in std::str::from_utf8(bytes).unwrap().split("from '").skip(1) {
                let target = import.split('\'').next().unwrap();
                let resolved = match target.strip_prefix("../") {
                    Some(up) => up.to_string(),
                    None => {
                        let file = target.strip_prefix("./").expect("relative imports only");
                        if dir.is_empty() {
                            file.to_string()
                        } else {
                            format!("{dir}/{file}")
                        }
                    }
                };
                assert!(get(&resolved).is_some(), "{name} imports {target}, which is not embedded");
            }
        }
    }
}
