//! Leader election on a `coordination.k8s.io/v1` Lease, so that two operator replicas never
//! fight over the same objects.
//!
//! ```text
//!  candidate ──(Lease free or expired: take it)──▶ leader ──(renew every renew_interval)──┐
//!      ▲                                             │ renew refused or failing past the  │
//!      └──────────────── lost: stop reconciling ◀────┘ renew deadline                     │
//!                                           SIGTERM: stop reconciling, release the Lease ◀┘
//! ```
//!
//! Expiry is judged like client-go does: by how long *this* process has seen the same
//! Lease record unchanged, not by comparing `renewTime` with the local clock, so clock
//! skew between replicas cannot make two of them leader. Updates carry the
//! `resourceVersion` they read, so two candidates cannot both win a takeover.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{info, warn};

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// `holderIdentity`: unique per process (hostname and pid).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
    /// Leadership is given up when renewals keep failing for this long.
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        LeaseConfig {
            namespace,
            name,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(3),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// `<hostname>_<pid>`.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    format!("{host}_{}", std::process::id())
}

/// The Lease as last observed: who held it, its renew time, and when we saw it change.
#[derive(Debug)]
struct Observation {
    record: (Option<String>, Option<MicroTime>),
    at: Instant,
}

pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Mutex<Option<Observation>>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(15)
    }

    /// One election round: acquire, renew or observe. `Ok(true)` when we hold the Lease.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(self.duration_secs()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    info!(lease = %self.config.name, identity = %self.config.identity, "created and acquired leader Lease");
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };

        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.config.identity.as_str());
        if !ours && holder.is_some() && !self.expired(&spec) {
            return Ok(false);
        }
        let mut next = spec.clone();
        next.holder_identity = Some(self.config.identity.clone());
        next.lease_duration_seconds = Some(self.duration_secs());
        next.renew_time = Some(now.clone());
        if !ours {
            next.acquire_time = Some(now);
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(next);
        // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                if !ours {
                    info!(lease = %self.config.name, identity = %self.config.identity, previous = ?holder, "acquired leader Lease");
                }
                self.observe(updated.spec.as_ref());
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn observe(&self, spec: Option<&LeaseSpec>) {
        let record = spec
            .map(|s| (s.holder_identity.clone(), s.renew_time.clone()))
            .unwrap_or_default();
        let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        if observed.as_ref().is_none_or(|o| o.record != record) {
            *observed = Some(Observation {
                record,
                at: Instant::now(),
            });
        }
    }

    /// Has the record been unchanged, as we watched it, for longer than its duration?
    fn expired(&self, spec: &LeaseSpec) -> bool {
        self.observe(Some(spec));
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.lease_duration, Duration::from_secs);
        let observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        observed.as_ref().is_some_and(|o| o.at.elapsed() > duration)
    }

    /// Gives the Lease up (if still ours) so a standby takes over without waiting for expiry.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        // A one-second duration lets the next candidate take over on its next round.
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await?;
        info!(lease = %self.config.name, "released leader Lease");
        Ok(())
    }

    /// Waits until this process holds the Lease, or `stop` says to give up (`false`).
    pub async fn acquire(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
        loop {
            if *stop.borrow() {
                return false;
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => warn!(error = %e, "leader election round failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.retry_period) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Renews until a renewal is refused, renewals fail past the deadline, or `stop`.
    /// Returns `true` when leadership was lost (as opposed to stopped).
    pub async fn hold(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
        let mut last_renewal = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.renew_interval) => {}
                _ = stop.changed() => return false,
            }
            if *stop.borrow() {
                return false;
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = Instant::now(),
                Ok(false) => {
                    warn!(lease = %self.config.name, "leader Lease taken by another replica");
                    return true;
                }
                Err(e) if last_renewal.elapsed() > self.config.renew_deadline => {
                    warn!(error = %e, "could not renew the leader Lease before the deadline");
                    return true;
                }
                Err(e) => warn!(error = %e, "leader Lease renewal failed; retrying"),
            }
        }
    }
}
