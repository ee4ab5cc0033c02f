//! The data plane put together: the accept loop (`server`) and the proxy path in phases
//! (`proxy`) and every way it can fail as a response (`error`), from the pieces in `http`, `access`, `routing` and `upstream`.

pub mod error;
pub mod h1;
pub mod proxy;
pub mod server;
