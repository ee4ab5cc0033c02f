//! Response bodies: one boxed type for proxied and generated responses, and an upstream
//! body that reports when it ends (to return the connection to the pool and end the
//! endpoint's in-flight count).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;

pub type Body = UnsyncBoxBody<Bytes, hyper::Error>;

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

/// Called once when the body ends: `true` when it was read to the end without error.
pub type OnEnd = Box<dyn FnOnce(bool) + Send>;

pub struct UpstreamBody {
    inner: Incoming,
    on_end: Option<OnEnd>,
}

impl UpstreamBody {
    pub fn new(inner: Incoming, on_end: OnEnd) -> Self {
        UpstreamBody {
            inner,
            on_end: Some(on_end),
        }
    }

    fn finish(&mut self, clean: bool) {
        if let Some(f) = self.on_end.take() {
            f(clean);
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.finish(true),
            _ => {}
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

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        let clean = self.inner.is_end_stream();
        self.finish(clean);
    }
}
