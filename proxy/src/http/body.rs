//! Bodies on the proxy path: one boxed type for proxied and generated responses, and the
//! request body sent upstream, which enforces the size limit and says afterwards what
//! became of it. (The upstream response body is `upstream::body`.)

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The downstream request body on its way upstream: it enforces the body size limit on
/// bodies whose length was not declared up front (chunked, HTTP/2), and tells the proxy
/// afterwards whether there was a body at all, whether it was too large, and whether the
/// client broke it.
pub struct RequestBody {
    /// `None`: a request Portico makes itself, without a body (an auth subrequest).
    inner: Option<Incoming>,
    /// `None` for a request without a body: nothing to wait for.
    state: Option<Arc<BodyState>>,
    limit: Option<u64>,
    seen: u64,
}

#[derive(Default)]
struct BodyState {
    too_large: AtomicBool,
    client_failed: AtomicBool,
}

/// What became of a [`RequestBody`]; cheap to check after the response head.
#[derive(Clone)]
pub struct BodySent(Option<Arc<BodyState>>);

impl BodySent {
    /// The client's body failed to parse (a malformed chunk, for example).
    pub fn client_failed(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|s| s.client_failed.load(Ordering::Acquire))
    }

    /// Stopped because it grew past the limit.
    pub fn was_too_large(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|s| s.too_large.load(Ordering::Acquire))
    }
}

/// The body outgrew the request body limit.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {0} bytes")]
pub struct TooLarge(pub u64);

impl RequestBody {
    /// `inner` is `None` for a request that came without one (`serve::h1` takes only those).
    pub fn new(inner: Option<Incoming>, limit: Option<u64>) -> Self {
        // Most requests carry no body: no allocation for them.
        let state = inner
            .as_ref()
            .is_some_and(|i| !i.is_end_stream())
            .then(|| Arc::new(BodyState::default()));
        RequestBody {
            inner,
            state,
            limit,
            seen: 0,
        }
    }

    /// No body at all.
    pub fn empty() -> Self {
        RequestBody {
            inner: None,
            state: None,
            limit: None,
            seen: 0,
        }
    }

    pub fn sent(&self) -> BodySent {
        BodySent(self.state.clone())
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.seen += data.len() as u64;
            if let Some(limit) = self.limit
                && self.seen > limit
            {
                if let Some(s) = &self.state {
                    s.too_large.store(true, Ordering::Release);
                }
                return Poll::Ready(Some(Err(Box::new(TooLarge(limit)))));
            }
        }
        if let (Poll::Ready(Some(Err(_))), Some(s)) = (&polled, &self.state) {
            s.client_failed.store(true, Ordering::Release);
        }
        polled.map_err(|e| Box::new(e) as Self::Error)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|i| i.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(i) => i.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

/// `<code> <reason>` as plain text: what every answer the proxy makes itself says.
pub fn status_text(status: StatusCode) -> Response<Body> {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut resp = Response::new(full(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
