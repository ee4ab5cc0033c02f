//! HTTP pieces the data plane is made of, none of which knows a route or an access rule:
//! bodies and the plain answers the proxy makes itself (`body`), header rules (`headers`), the request
//! target (`target`), pooled deadlines (`timer`), the PROXY protocol and the access log.
//! The accept loop and the proxy path that put them together are in `serve`.

pub mod access_log;
pub mod body;
pub mod headers;
pub mod proxy_protocol;
pub mod spans;
pub mod target;
pub mod timer;
