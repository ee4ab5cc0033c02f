//! A backend's response body on its way to the client: it reports when it ends, to return
//! the connection to the pool and end the endpoint's in-flight count.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use super::wire::{H1Conn, WireBody};
use crate::http::body::BoxError;

/// A backend's response body: read by the proxy's own HTTP/1.1 client (see
/// `upstream::wire`), or by hyper's (a request that had a body or an upgrade, and HTTP/2).
pub enum Upstream {
    Wire(WireBody),
    Hyper(Incoming),
}

impl http_body::Body for Upstream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Upstream::Wire(b) => Pin::new(b).poll_frame(cx),
            Upstream::Hyper(b) => Pin::new(b)
                .poll_frame(cx)
                .map_err(|e| Box::new(e) as BoxError),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Upstream::Wire(b) => b.is_end_stream(),
            Upstream::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Upstream::Wire(b) => b.size_hint(),
            Upstream::Hyper(b) => b.size_hint(),
        }
    }
}

/// An upstream response body and `on_end`, called once when it ends or is dropped, with
/// the connection when it can serve another request (read to the end, nothing left over).
/// Generic, so the callback lives in the body's own box instead of one more allocation.
pub struct UpstreamBody<F: FnOnce(Option<H1Conn>) + Send> {
    inner: Upstream,
    on_end: Option<F>,
}

impl<F: FnOnce(Option<H1Conn>) + Send> UpstreamBody<F> {
    pub fn new(inner: Upstream, on_end: F) -> Self {
        UpstreamBody {
            inner,
            on_end: Some(on_end),
        }
    }

    fn finish(&mut self) {
        if let Some(f) = self.on_end.take() {
            let conn = match &mut self.inner {
                Upstream::Wire(b) => b.take_reusable(),
                Upstream::Hyper(_) => None,
            };
            f(conn);
        }
    }
}

impl<F: FnOnce(Option<H1Conn>) + Send + Unpin> http_body::Body for UpstreamBody<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.finish(),
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

impl<F: FnOnce(Option<H1Conn>) + Send> Drop for UpstreamBody<F> {
    fn drop(&mut self) {
        self.finish();
    }
}
