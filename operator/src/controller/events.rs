//! Kubernetes Events: published through one recorder, Warnings on Ingresses once per
//! problem (until it goes away and comes back), notes cut to the apiserver's limit.

use std::collections::HashSet;

use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::warn;

use crate::api::IngressController;
use crate::verdict;

use super::Context;

impl Context {
    /// Publishes an Event; false when the API refused it (logged).
    pub(super) async fn event(
        &self,
        on: &impl Resource<DynamicType = ()>,
        type_: EventType,
        reason: &str,
        note: String,
    ) -> bool {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate_note(note)),
            action: "Reconcile".into(),
            secondary: None,
        };
        match self.recorder.publish(&event, &on.object_ref(&())).await {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, reason, "could not publish event");
                false
            }
        }
    }

    /// Publishes the warnings not yet published for `instance`, and forgets those that no
    /// longer hold (so that a problem that comes back is published again).
    pub(super) async fn warn_ingresses(
        &self,
        instance: &ObjectRef<IngressController>,
        warnings: &[verdict::Warning],
    ) {
        let before = self
            .published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(instance)
            .unwrap_or_default();
        let mut now = HashSet::new();
        for w in warnings {
            let key = (
                w.ingress.uid().unwrap_or_default(),
                w.reason,
                w.note.clone(),
            );
            if now.contains(&key) {
                continue;
            }
            if before.contains(&key)
                || self
                    .event(
                        w.ingress.as_ref(),
                        EventType::Warning,
                        w.reason,
                        w.note.clone(),
                    )
                    .await
            {
                now.insert(key);
            }
        }
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(instance.clone(), now);
    }

    pub(super) fn forget_warnings(&self, instance: &ObjectRef<IngressController>) {
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(instance);
        self.judged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(instance);
    }
}

/// The apiserver refuses Event notes over 1 kB; a long error (an RBAC denial quoting the
/// rules, say) would otherwise lose the whole Event.
fn truncate_note(mut note: String) -> String {
    const MAX: usize = 1024;
    if note.len() > MAX {
        let mut end = MAX - '…'.len_utf8();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}

#[cfg(test)]
mod note_tests {
    #[test]
    fn long_notes_are_cut_to_the_apiserver_limit_on_a_char_boundary() {
        let long = "é".repeat(800);
        let cut = super::truncate_note(long);
        assert!(cut.len() <= 1024, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(super::truncate_note("short".into()), "short");
    }
}
