//! Per-request deadlines without a timer-wheel insert and removal per request.
//!
//! ```text
//! request starts ─ take a Sleep from the pool ─ reset to now+timeout (one CAS: the entry
//!                  stays in tokio's wheel, its deadline only moves later)
//! request ends   ─ the Sleep goes back to the pool, still registered
//! ```
//!
//! A new `tokio::time::Sleep` per request (what `tokio::time::timeout` does) locks the
//! driver to insert its entry when first polled and again to remove it when dropped. A
//! pooled one that is reset to a later deadline is only re-filed by the driver when its old
//! deadline comes; one whose deadline passed (or that must fire earlier) is registered
//! again, as a new one would be. The deadlines still fire exactly as tokio's would: the
//! request timeout keeps its meaning, it only stops costing a lock pair per request. (The
//! header-read timeout needs no sleep per request at all: `serve::server`'s watch.)
//!
//! A pool belongs to one runtime (its sleeps are bound to that runtime's timer): the proxy
//! makes its own inside each worker.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Pooled sleeps kept at most (one per connection waiting at once is plenty).
const MAX_POOLED: usize = 1024;

#[derive(Debug, Default)]
pub struct SleepPool {
    idle: Mutex<Vec<Pin<Box<Sleep>>>>,
}

/// The deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl SleepPool {
    /// A sleep until `deadline`, a pooled one when there is one.
    pub fn sleep_until<P: Deref<Target = SleepPool>>(pool: P, deadline: Instant) -> PooledSleep<P> {
        let reused = pool.idle.lock().ok().and_then(|mut idle| idle.pop());
        let sleep = match reused {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        PooledSleep {
            sleep: Some(sleep),
            pool,
        }
    }

    /// `fut`, or [`Elapsed`] once `timeout` has passed (`tokio::time::timeout` on a pooled
    /// sleep).
    #[inline(always)]
    pub fn timeout<F: Future>(&self, timeout: Duration, fut: F) -> Timeout<'_, F> {
        Timeout {
            inner: fut,
            sleep: SleepPool::sleep_until(self, Instant::now() + timeout),
        }
    }
}

pin_project_lite::pin_project! {
    /// [`SleepPool::timeout`]'s future. Written out rather than an `async fn`, which would
    /// store `fut` twice (the argument and its pinned copy): this one is part of every
    /// request's future, and that is moved (copied) as a whole.
    pub struct Timeout<'a, F> {
        #[pin]
        inner: F,
        sleep: PooledSleep<&'a SleepPool>,
    }
}

impl<F: Future> Future for Timeout<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.inner.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        Pin::new(this.sleep).poll(cx).map(|()| Err(Elapsed))
    }
}

/// A sleep that goes back to its pool when dropped.
pub struct PooledSleep<P: Deref<Target = SleepPool>> {
    sleep: Option<Pin<Box<Sleep>>>,
    pool: P,
}

// The sleep is boxed and the pool handle is never pinned.
impl<P: Deref<Target = SleepPool>> Unpin for PooledSleep<P> {}

impl<P: Deref<Target = SleepPool>> Future for PooledSleep<P> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl<P: Deref<Target = SleepPool>> Drop for PooledSleep<P> {
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take()
            && let Ok(mut idle) = self.pool.idle.lock()
            && idle.len() < MAX_POOLED
        {
            idle.push(sleep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wheel counts whole milliseconds.
    fn close_to(elapsed: Duration, expected: Duration) {
        assert!(
            elapsed >= expected && elapsed <= expected + Duration::from_millis(2),
            "{elapsed:?} is not {expected:?}"
        );
    }

    /// A future that never finishes, under `pool`'s timeout of `after`: cut at `after`.
    async fn times_out_after(pool: &SleepPool, after: Duration) {
        let start = Instant::now();
        let r = pool.timeout(after, std::future::pending::<()>()).await;
        assert_eq!(r, Err(Elapsed));
        close_to(start.elapsed(), after);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pooled_sleep_still_fires_after_reuse() {
        let pool = SleepPool::default();
        // Used and returned before its deadline: it stays registered, then is moved later.
        let r = pool.timeout(Duration::from_secs(1), async { 7 }).await;
        assert_eq!(r, Ok(7));
        assert_eq!(pool.idle.lock().expect("pool").len(), 1);
        times_out_after(&pool, Duration::from_secs(5)).await;
        // Fired, returned, and reused for a shorter deadline.
        times_out_after(&pool, Duration::from_millis(20)).await;
        assert_eq!(pool.idle.lock().expect("pool").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_than_the_pooled_one_fires_on_time() {
        let pool = SleepPool::default();
        let _ = pool.timeout(Duration::from_secs(60), async {}).await;
        times_out_after(&pool, Duration::from_secs(1)).await;
    }
}
