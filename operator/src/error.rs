//! The operator's one error type: transient errors requeue with backoff, permanent ones
//! set a condition and wait for the user to change something.

use crate::apply::NotOurs;
use crate::resources::MissingMetadata;
use crate::tenancy::InvalidSelector;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server failed or refused a request; usually transient.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    /// The instance lacks metadata the API server always sets.
    #[error(transparent)]
    MissingMetadata(#[from] MissingMetadata),

    /// `spec.namespaceSelector` cannot be evaluated.
    #[error(transparent)]
    InvalidSelector(#[from] InvalidSelector),

    /// The finalizer machinery failed (wraps the apply or cleanup error).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    /// Serializing an object for server-side apply failed (a bug).
    #[error("serialize {0}: {1}")]
    Serialize(&'static str, #[source] serde_json::Error),

    /// A child's name is taken by an object that is not this instance's.
    #[error(transparent)]
    NotOurs(#[from] NotOurs),
}

impl Error {
    /// Short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MissingMetadata(_) => "missing_metadata",
            Error::InvalidSelector(_) => "invalid_selector",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer",
            },
            Error::Serialize(..) => "serialize",
            Error::NotOurs(_) => "not_ours",
        }
    }

    /// The reason of the condition and Event a permanent error becomes.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NotOurs(_) => "ObjectOwnedElsewhere",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.reason(),
                _ => "ReconcileFailed",
            },
            _ => "ReconcileFailed",
        }
    }

    /// Permanent errors need a change by the user; retrying soon will not help.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::InvalidSelector(_)
            | Error::MissingMetadata(_)
            | Error::Serialize(..)
            | Error::NotOurs(_) => true,
            // 4xx other than conflicts and throttling mean the request itself is wrong.
            Error::Kube(kube::Error::Api(status)) => {
                matches!(status.code, 400 | 403 | 404 | 422) && status.reason != "NotFound"
            }
            Error::Kube(_) => false,
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.is_permanent(),
                _ => false,
            },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str) -> Error {
        Error::Kube(kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: reason.into(),
            ..kube::core::Status::default()
        })))
    }

    #[test]
    fn transient_and_permanent_are_told_apart() {
        assert!(
            !api_error(409, "Conflict").is_permanent(),
            "conflicts retry"
        );
        assert!(!api_error(500, "InternalError").is_permanent());
        assert!(!api_error(429, "TooManyRequests").is_permanent());
        assert!(
            !api_error(404, "NotFound").is_permanent(),
            "a namespace may appear"
        );
        assert!(api_error(422, "Invalid").is_permanent());
        assert!(api_error(403, "Forbidden").is_permanent());
        assert!(Error::InvalidSelector(InvalidSelector::new("bad")).is_permanent());
        assert_eq!(api_error(500, "x").metric_label(), "kube");
        assert_eq!(
            Error::InvalidSelector(InvalidSelector::new("bad")).metric_label(),
            "invalid_selector"
        );
        let taken = Error::from(NotOurs {
            kind: "ClusterRole".into(),
            name: "portico:team:web".into(),
            owner: "belongs to IngressController other/web".into(),
        });
        assert!(taken.is_permanent(), "someone must remove the object");
        assert_eq!(taken.reason(), "ObjectOwnedElsewhere");
        assert_eq!(api_error(403, "Forbidden").reason(), "ReconcileFailed");
        assert!(
            taken.to_string().contains(
                "ClusterRole portico:team:web already exists and belongs to IngressController other/web"
            ),
            "{taken}"
        );
    }
}
