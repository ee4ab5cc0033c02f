//! Access log: one JSON line per request on stdout (the proxy's own logs go to stderr),
//! when the instance turns it on (`--access-log`) and the Ingress does not turn it off
//! (`nginx.ingress.kubernetes.io/enable-access-log: "false"`). docs/configuration.md
//! documents the fields.
//!
//! ```text
//! response body ends (or is dropped) ─▶ Entry ─▶ JSON ─▶ try_send: bounded queue, never waits
//!                                                  (full: the line is dropped and counted)
//!   writer thread ─▶ BufWriter(stdout) ─▶ flush once the queue is empty
//! ```
//!
//! Off, it costs the request path one branch. On, a request pays for formatting its line
//! and one non-blocking send; writing happens on the writer thread, so a slow stdout never
//! holds a request or a runtime thread.

use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use serde::Serialize;

use super::body::Body;

/// Lines waiting for the writer; beyond this, lines are dropped rather than waited for.
const QUEUE: usize = 16_384;

/// The sending side of the access log; cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: SyncSender<String>,
}

/// One request's line. Field names are the documented format.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// RFC 3339, UTC, milliseconds: when the request came in.
    pub time: String,
    /// The client's address (from `X-Forwarded-For` only when the peer is trusted).
    pub client: IpAddr,
    pub host: String,
    pub method: String,
    /// The path as requested, without the query (which often carries secrets).
    pub path: String,
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes: u64,
    /// Seconds from the request to the end of the response body.
    pub duration: f64,
    /// The endpoint that answered, when one did.
    pub upstream: Option<String>,
    /// `namespace/name` of the Ingress that routed the request, when one did.
    pub ingress: Option<String>,
}

impl AccessLog {
    /// Lines to stdout, written by a thread of their own.
    pub fn stdout() -> std::io::Result<AccessLog> {
        AccessLog::to_writer(std::io::stdout())
    }

    pub fn to_writer(w: impl Write + Send + 'static) -> std::io::Result<AccessLog> {
        // Registered now, so the series reads 0 rather than missing while nothing drops.
        dropped();
        let (tx, rx) = sync_channel::<String>(QUEUE);
        std::thread::Builder::new()
            .name("portico-access-log".into())
            .spawn(move || {
                let mut out = BufWriter::with_capacity(64 * 1024, w);
                while let Ok(line) = rx.recv() {
                    let _ = out.write_all(line.as_bytes());
                    while let Ok(line) = rx.try_recv() {
                        let _ = out.write_all(line.as_bytes());
                    }
                    let _ = out.flush();
                }
            })?;
        Ok(AccessLog { tx })
    }

    /// Queues `entry`'s line; never waits.
    pub fn write(&self, entry: &Entry) {
        let Ok(mut line) = serde_json::to_string(entry) else {
            return;
        };
        line.push('\n');
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
            dropped().inc();
        }
    }
}

#[allow(clippy::expect_used)] // a constant, valid metric definition; failing here is a bug
fn dropped() -> &'static prometheus::IntCounter {
    static DROPPED: OnceLock<prometheus::IntCounter> = OnceLock::new();
    DROPPED.get_or_init(|| {
        let c = prometheus::IntCounter::new(
            "access_log_lines_dropped_total",
            "Access log lines dropped because the writer fell behind",
        )
        .expect("metric");
        let _ = crate::metrics::METRICS
            .registry
            .register(Box::new(c.clone()));
        c
    })
}

/// Now, as the log's `time`.
pub fn now() -> String {
    format!("{:.3}", crate::clock::timestamp_in(0))
}

/// A response body that counts what it sends and writes the access log line when it ends
/// (or the client goes away).
pub struct LoggedBody {
    inner: Body,
    log: Option<(AccessLog, Entry, Instant)>,
}

impl LoggedBody {
    pub fn new(inner: Body, log: AccessLog, entry: Entry, start: Instant) -> Self {
        LoggedBody {
            inner,
            log: Some((log, entry, start)),
        }
    }

    fn finish(&mut self) {
        if let Some((log, mut entry, start)) = self.log.take() {
            entry.duration = start.elapsed().as_secs_f64();
            log.write(&entry);
        }
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = crate::http::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some((_, entry, _))) = (frame.data_ref(), this.log.as_mut()) {
                    entry.bytes += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(_) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn one_json_line_per_request_when_the_body_ends() {
        let sink = Sink::default();
        let log = AccessLog::to_writer(sink.clone()).expect("writer");
        let entry = Entry {
            time: now(),
            client: "10.0.0.1".parse().expect("ip"),
            host: "a.example".into(),
            method: "GET".into(),
            path: "/x".into(),
            status: 200,
            bytes: 0,
            duration: 0.0,
            upstream: Some("10.244.0.2:8080".into()),
            ingress: Some("a/web".into()),
        };
        let body = LoggedBody::new(
            super::super::body::full("hello"),
            log,
            entry,
            Instant::now(),
        );
        let got = body.collect().await.expect("body").to_bytes();
        assert_eq!(&got[..], b"hello");
        let mut text = String::new();
        for _ in 0..100 {
            text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf8");
            if !text.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("json");
        assert_eq!(line["bytes"], 5);
        assert_eq!(line["status"], 200);
        assert_eq!(line["ingress"], "a/web");
        assert!(
            line["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
    }
}
