//! The one error type of notifications.

/// Everything setting up or recording notifications can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// An endpoint's options cannot be used.
    #[error("notification endpoint {endpoint}: {reason}")]
    Config {
        /// The endpoint's name.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// Recording an event in storage failed.
    #[error("recording an event: {0}")]
    Storage(#[from] oci_storage::StorageError),
}

/// Result alias for this crate.
pub type Result<T, E = NotifyError> = std::result::Result<T, E>;
