//! `portico-bench backend`: the upstream every contender proxies to. The smallest useful
//! answer — status 200, a 2-byte body — plus `x-backend: <the address it was reached on>`,
//! so a probe can tell which endpoint a proxy picked, and `x-seen-prefix` / `x-seen-host`
//! echoing a request's `X-Forwarded-Prefix` and its `Host` when it carries the former (the
//! features case's header rewrites). One current-thread runtime (it shares
//! the load core with the load generator), HTTP/1.1 keep-alive, many listening addresses.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub fn run(listen: &[SocketAddr]) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut tasks = Vec::new();
        for &addr in listen {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("bind {addr}"))?;
            tasks.push(tokio::spawn(serve(listener)));
        }
        eprintln!(
            "portico-bench backend listening on {} addresses",
            listen.len()
        );
        for task in tasks {
            task.await??;
        }
        anyhow::Ok(())
    })
}

async fn serve(listener: TcpListener) -> Result<()> {
    let local = listener.local_addr()?;
    let name = HeaderValue::from_str(&local.to_string())?;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors under a connection storm: back off, keep serving.
                eprintln!("accept on {local}: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let name = name.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                let headers = response.headers_mut();
                headers.insert("x-backend", name.clone());
                if let Some(prefix) = req.headers().get("x-forwarded-prefix") {
                    headers.insert("x-seen-prefix", prefix.clone());
                    if let Some(host) = req.headers().get(http::header::HOST) {
                        headers.insert("x-seen-host", host.clone());
                    }
                }
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
