//! Answers sent while they are written: the snapshot JSON of a million
//! tasks is some 250 MB, which the client should start receiving at once,
//! and which should never sit whole in the process it observes.
//!
//! A blocking thread takes the snapshot and renders it in chunks into a
//! short queue; the response body drains the queue. The queue is bounded
//! ([`QUEUE`] chunks), so a client that reads slowly slows the renderer
//! rather than filling memory, and one that stops reading for
//! [`STALL_TIMEOUT`] ends the answer (counted as timed out) rather than
//! pinning the thread. A client that goes away stops the renderer at its
//! next chunk.
//!
//! Until the first chunk is queued, failures are ordinary responses (a
//! panic is a counted 500). After it, the status line has been sent: a
//! panic is counted and reported, and the connection is aborted, so that
//! the client sees an error rather than a short body that looks whole.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc::{self, error::TrySendError};

use super::{layers, AppState, HttpError};
use crate::snapshot::Snapshot;

/// Chunks queued between the renderer and the connection.
pub(crate) const QUEUE: usize = 8;
/// How long the renderer waits to queue one chunk before giving up on the
/// client.
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_secs(30);

type Chunk = Result<Bytes, io::Error>;

/// Takes a snapshot on a blocking thread and answers with what `render`
/// writes, as it writes it. `render` hands each chunk to its sink, which
/// returns false once the client is gone (then `render` should stop).
pub(crate) async fn snapshot_streamed(
    shared: &AppState,
    content_type: &'static str,
    render: impl FnOnce(Snapshot, &mut dyn FnMut(Vec<u8>) -> bool) + Send + 'static,
) -> Result<Response, HttpError> {
    let runtime = shared.runtime.clone();
    let settings = shared.detect;
    let (tx, mut rx) = mpsc::channel::<Chunk>(QUEUE);
    let worker = tokio::task::spawn_blocking(move || {
        let mut sent = false;
        let rendered = super::take_and_render(runtime.as_ref(), &settings, |snapshot| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                render(snapshot, &mut |chunk| {
                    sent = true;
                    queue(&tx, Ok(Bytes::from(chunk)))
                })
            }))
        });
        if let Err(payload) = rendered {
            if !sent {
                // Nothing sent yet: a 500 like any other handler's panic.
                std::panic::resume_unwind(payload);
            }
            crate::health::report_panic("a streamed answer's renderer", &*payload);
            let reason = format!("taskscope failed: {}", crate::health::panic_message(&*payload));
            queue(&tx, Err(io::Error::other(reason)));
        }
    });
    let Some(first) = rx.recv().await else {
        // The renderer wrote nothing: it panicked (a 500), or there was
        // nothing to write.
        layers::join(worker).await?;
        return Ok(([(header::CONTENT_TYPE, content_type)], Body::empty()).into_response());
    };
    let body = Body::from_stream(Queued { first: Some(first), rx });
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// Queues `chunk`, waiting while the queue is full; false when the client
/// is gone or has not read for [`STALL_TIMEOUT`] (counted).
fn queue(tx: &mpsc::Sender<Chunk>, mut chunk: Chunk) -> bool {
    let give_up = Instant::now() + STALL_TIMEOUT;
    let mut pause = Duration::from_micros(20);
    loop {
        match tx.try_send(chunk) {
            Ok(()) => return true,
            Err(TrySendError::Closed(_)) => return false,
            Err(TrySendError::Full(back)) => {
                if Instant::now() >= give_up {
                    crate::health::count_timed_out();
                    tracing::warn!(
                        "taskscope: a client read nothing for {} s; its answer was cut short",
                        STALL_TIMEOUT.as_secs()
                    );
                    return false;
                }
                chunk = back;
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(1));
            }
        }
    }
}

/// The queue as a body stream.
struct Queued {
    first: Option<Chunk>,
    rx: mpsc::Receiver<Chunk>,
}

impl futures_core::Stream for Queued {
    type Item = Chunk;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::StatusCode;
    use http_body_util::BodyExt;

    use super::*;
    use crate::http::Shared;

    async fn answer(
        render: impl FnOnce(Snapshot, &mut dyn FnMut(Vec<u8>) -> bool) + Send + 'static,
    ) -> (StatusCode, Result<Bytes, String>) {
        let shared: AppState = Arc::new(Shared::default());
        let response = match snapshot_streamed(&shared, "text/plain", render).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
        let status = response.status();
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).map_err(|e| e.to_string());
        (status, body)
    }

    #[tokio::test]
    async fn chunks_arrive_in_order() {
        let (status, body) = answer(|_, send| {
            for i in 0..100u8 {
                assert!(send(vec![i; 1000]));
            }
        })
        .await;
        assert_eq!(status, 200);
        let body = body.unwrap();
        assert_eq!(body.len(), 100_000);
        assert!(body.chunks(1000).enumerate().all(|(i, c)| c.iter().all(|&b| b == i as u8)));
    }

    #[tokio::test]
    async fn a_panic_before_the_first_chunk_resumes_in_the_handler() {
        // There, the router's panic layer makes it a counted 500 (tested in
        // http::tests with the same renderer panic).
        let handler = tokio::spawn(answer(|_, _| panic!("deliberate panic before any chunk")));
        let err = handler.await.expect_err("the handler panics");
        let payload = err.into_panic();
        assert_eq!(crate::health::panic_message(&*payload), "deliberate panic before any chunk");
    }

    #[tokio::test]
    async fn a_panic_after_the_first_chunk_is_counted_and_cuts_the_body_with_an_error() {
        let before = crate::health::panics();
        let (status, body) = answer(|_, send| {
            send(b"{\"tasks\":[".to_vec());
            panic!("deliberate panic half-way")
        })
        .await;
        assert_eq!(status, 200, "the status line was sent with the first chunk");
        let err = body.expect_err("the body must end in an error, not look whole");
        assert!(err.contains("deliberate panic half-way"), "{err}");
        assert!(crate::health::panics() > before);
    }

    #[tokio::test]
    async fn a_client_that_leaves_stops_the_renderer() {
        let shared: AppState = Arc::new(Shared::default());
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let response = snapshot_streamed(&shared, "text/plain", move |_, send| {
            let mut sent = 0;
            while send(vec![0; 1000]) {
                sent += 1;
                if sent > 1_000_000 {
                    break;
                }
            }
            done_tx.send(sent).unwrap();
        })
        .await
        .unwrap();
        drop(response);
        let sent = tokio::task::spawn_blocking(move || done_rx.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .expect("the renderer stopped");
        assert!(sent <= QUEUE + 2, "the renderer went on after the client left: {sent} chunks");
    }
}
