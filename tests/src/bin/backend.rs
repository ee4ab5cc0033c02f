//! `portico-backend`: the sample backend of the tests and the demo.
//!
//! Answers every request with a small JSON document naming itself and describing what it
//! received (method, path, HTTP version, headers), so a test can tell which endpoint served a
//! request and what the proxy forwarded. `?delay_ms=N` delays the answer, `?status=N` answers with that status; a WebSocket upgrade
//! on any path becomes an echo session. Serves HTTP/1.1 and HTTP/2 cleartext (h2c).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

#[derive(Parser, Debug)]
#[command(about = "Echo backend for Portico's tests and demo")]
struct Args {
    /// Address to listen on, for example 10.244.1.5:8080 (repeatable).
    #[arg(long, required = true)]
    listen: Vec<SocketAddr>,
    /// The name this backend answers with.
    #[arg(long, default_value = "backend")]
    name: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let name: Arc<str> = args.name.into();
    let mut tasks = Vec::new();
    for addr in args.listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {addr}"))?;
        eprintln!("portico-backend {name} listening on {addr}");
        tasks.push(tokio::spawn(serve(listener, name.clone())));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn serve(listener: TcpListener, name: Arc<str>) -> Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let name = name.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, name.clone(), peer));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    name: Arc<str>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if is_websocket(&req) {
        return Ok(websocket(req));
    }
    let delay = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("delay_ms=")))
        .and_then(|v| v.parse::<u64>().ok());
    let status = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("status=")))
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|v| StatusCode::from_u16(v).ok())
        .unwrap_or(StatusCode::OK);
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms.min(120_000))).await;
    }
    // A name sent more than once shows every value, joined by ", ", so that a test sees
    // a duplicate (a client's spoofed field beside the proxy's own) and not just the last.
    let mut headers = serde_json::Map::new();
    for name in req.headers().keys() {
        let values: Vec<String> = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        headers.insert(
            name.as_str().to_string(),
            serde_json::Value::String(values.join(", ")),
        );
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let version = format!("{:?}", req.version());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let doc = serde_json::json!({
        "backend": &*name,
        "method": method,
        "path": path,
        "query": query,
        "version": version,
        "peer": peer.to_string(),
        "bodyBytes": body,
        "headers": headers,
    });
    let response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-backend", &*name)
        .body(Full::new(Bytes::from(doc.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
    Ok(response)
}

fn is_websocket(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Accepts the upgrade and echoes every message until the client closes.
fn websocket(mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Full::new(Bytes::new()))
            .unwrap_or_default();
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        )
        .body(Full::new(Bytes::new()))
        .unwrap_or_default()
}
