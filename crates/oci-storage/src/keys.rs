//! Keys the registry keeps in storage so that every replica shares them
//! (the token signing key when the configuration names none).

use bytes::Bytes;

use crate::error::{Result, StorageError};
use crate::{Storage, layout};

/// Longest key object read back.
const MAX_KEY_BYTES: usize = 64 * 1024;

impl Storage {
    /// The shared key [`SharedKey`] names. The first replica to ask stores
    /// its `candidate` in one conditional write; every other replica (and
    /// every later start) reads that same key back, so replicas starting
    /// at once still agree.
    pub async fn shared_key(&self, key: SharedKey, candidate: Bytes) -> Result<Bytes> {
        let path = layout::shared_key(key.file_name());
        if let Some(stored) = self.read_small(&path).await? {
            return checked(&path, stored);
        }
        self.create_small(&path, candidate).await?;
        let stored = self
            .read_small(&path)
            .await?
            .ok_or_else(|| StorageError::Corrupt {
                path: path.to_string(),
                reason: "vanished right after it was created".into(),
            })?;
        checked(&path, stored)
    }
}

/// The keys kept in storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SharedKey {
    /// The token signing key (PKCS#8 PEM) of the built-in token issuer.
    TokenSigning,
    /// The web UI's session (and CSRF) signing key: random bytes.
    UiSession,
}

impl SharedKey {
    fn file_name(self) -> &'static str {
        match self {
            Self::TokenSigning => "token-signing-key.pem",
            Self::UiSession => "ui-session-key",
        }
    }
}

fn checked(path: &object_store::path::Path, key: Bytes) -> Result<Bytes> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(StorageError::Corrupt {
            path: path.to_string(),
            reason: format!("{} bytes is no key", key.len()),
        });
    }
    Ok(key)
}
