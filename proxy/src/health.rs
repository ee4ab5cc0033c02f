//! Liveness and readiness: set by the config loop (ready after the first full sync) and
//! the signal handler (draining), read by the admin server.

use std::sync::atomic::{AtomicBool, Ordering};

/// Liveness and readiness, shared with the admin server and the signal handler.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}
