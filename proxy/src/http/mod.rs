//! The HTTP data plane: accept loop (`server`), the proxy path in phases (`proxy`),
//! upstream connections (`client`), header rules (`headers`), and errors as responses
//! (`error`).

pub mod access_log;
pub mod body;
pub mod client;
pub mod error;
pub mod headers;
pub mod proxy;
pub mod proxy_protocol;
pub mod server;
pub mod target;
pub mod timer;
