//! Content digests (image-spec "Digests"): `algorithm ":" encoded`.

use std::fmt;
use std::str::FromStr;

use ::digest::Digest as _;
use ::digest::common::hazmat::{SerializableState, SerializedState};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, clip};

/// The digest algorithms the registry accepts (image-spec "Registered
/// algorithms"). `sha256` is what every client uses; `sha512` is optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlgorithm {
    /// SHA-256, 64 lowercase hex characters.
    Sha256,
    /// SHA-512, 128 lowercase hex characters.
    Sha512,
}

impl DigestAlgorithm {
    /// The algorithm's name as it appears before the `:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated content digest such as `sha256:e3b0c442…`.
///
/// Parsed once at the edge; everything inside the registry takes this type,
/// so a malformed or unsupported digest can never reach storage.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: DigestAlgorithm,
    /// The whole string, `algorithm:hex`.
    full: String,
}

impl Digest {
    /// The SHA-256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let mut hasher = DigestHasher::new(DigestAlgorithm::Sha256);
        hasher.update(bytes);
        hasher.finalize()
    }

    /// The digest of `bytes` computed with `algorithm`.
    pub fn of_with(algorithm: DigestAlgorithm, bytes: &[u8]) -> Self {
        let mut hasher = DigestHasher::new(algorithm);
        hasher.update(bytes);
        hasher.finalize()
    }

    /// The algorithm part.
    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// The lowercase hex part after the `:`.
    pub fn hex(&self) -> &str {
        &self.full[self.algorithm.as_str().len() + 1..]
    }

    /// The whole digest string.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidDigest {
            value: clip(s),
            reason,
        };
        let (alg, hex) = s.split_once(':').ok_or_else(|| invalid("missing ':'"))?;
        let algorithm = match alg {
            "sha256" => DigestAlgorithm::Sha256,
            "sha512" => DigestAlgorithm::Sha512,
            _ => return Err(invalid("unsupported algorithm")),
        };
        if hex.len() != algorithm.hex_len() {
            return Err(invalid("wrong encoded length"));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid("encoded part is not lowercase hex"));
        }
        Ok(Self {
            algorithm,
            full: s.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.full)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental hasher for either algorithm, fed as bytes arrive.
///
/// Its state can be saved with [`DigestHasher::save`] and resumed with
/// [`DigestHasher::restore`], so an upload session can be continued after a
/// restart, or on another replica, without re-reading the bytes already
/// received.
#[derive(Clone)]
pub enum DigestHasher {
    /// SHA-256 state.
    Sha256(sha2::Sha256),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
}

impl DigestHasher {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: DigestAlgorithm) -> Self {
        match algorithm {
            DigestAlgorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            DigestAlgorithm::Sha512 => Self::Sha512(sha2::Sha512::new()),
        }
    }

    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> DigestAlgorithm {
        match self {
            Self::Sha256(_) => DigestAlgorithm::Sha256,
            Self::Sha512(_) => DigestAlgorithm::Sha512,
        }
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(bytes),
            Self::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed so far.
    pub fn finalize(self) -> Digest {
        let (algorithm, hex) = match self {
            Self::Sha256(h) => (DigestAlgorithm::Sha256, hex::encode(h.finalize())),
            Self::Sha512(h) => (DigestAlgorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest {
            algorithm,
            full: format!("{algorithm}:{hex}"),
        }
    }

    /// The internal state as bytes, to be stored beside an upload session.
    pub fn save(&self) -> Vec<u8> {
        match self {
            Self::Sha256(h) => h.serialize().to_vec(),
            Self::Sha512(h) => h.serialize().to_vec(),
        }
    }

    /// Rebuilds a hasher from bytes produced by [`DigestHasher::save`].
    pub fn restore(algorithm: DigestAlgorithm, state: &[u8]) -> Result<Self, Error> {
        Ok(match algorithm {
            DigestAlgorithm::Sha256 => {
                let state = SerializedState::<sha2::Sha256>::try_from(state)
                    .map_err(|_| Error::InvalidHashState)?;
                Self::Sha256(
                    sha2::Sha256::deserialize(&state).map_err(|_| Error::InvalidHashState)?,
                )
            }
            DigestAlgorithm::Sha512 => {
                let state = SerializedState::<sha2::Sha512>::try_from(state)
                    .map_err(|_| Error::InvalidHashState)?;
                Self::Sha512(
                    sha2::Sha512::deserialize(&state).map_err(|_| Error::InvalidHashState)?,
                )
            }
        })
    }
}

impl fmt::Debug for DigestHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DigestHasher({})", self.algorithm())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_empty_is_well_known() {
        assert_eq!(Digest::of(b"").as_str(), EMPTY_SHA256);
        let d512 = Digest::of_with(DigestAlgorithm::Sha512, b"");
        assert!(d512.as_str().starts_with("sha512:cf83e1357eefb8bd"));
        assert_eq!(d512.hex().len(), 128);
    }

    #[test]
    fn parses_valid_digests() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(d.algorithm(), DigestAlgorithm::Sha256);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.to_string(), EMPTY_SHA256);
    }

    #[test]
    fn rejects_malformed_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn serde_round_trip_and_rejection() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:nothex\"").is_err());
    }

    #[test]
    fn restored_hasher_continues_where_it_stopped() {
        for alg in [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512] {
            let mut h = DigestHasher::new(alg);
            h.update(b"hello ");
            let saved = h.save();
            let mut resumed = DigestHasher::restore(alg, &saved).unwrap();
            resumed.update(b"world");
            assert_eq!(resumed.finalize(), Digest::of_with(alg, b"hello world"));
        }
        assert_eq!(
            DigestHasher::restore(DigestAlgorithm::Sha256, b"short").unwrap_err(),
            Error::InvalidHashState
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = s.parse::<Digest>();
        }

        #[test]
        fn print_parse_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..256), use512: bool) {
            let alg = if use512 { DigestAlgorithm::Sha512 } else { DigestAlgorithm::Sha256 };
            let d = Digest::of_with(alg, &bytes);
            let parsed: Digest = d.to_string().parse().unwrap();
            prop_assert_eq!(parsed, d);
        }

        #[test]
        fn split_hashing_equals_whole(bytes in proptest::collection::vec(any::<u8>(), 0..512), cut in 0usize..512) {
            let cut = cut.min(bytes.len());
            let mut h = DigestHasher::new(DigestAlgorithm::Sha256);
            h.update(&bytes[..cut]);
            let mut h = DigestHasher::restore(DigestAlgorithm::Sha256, &h.save()).unwrap();
            h.update(&bytes[cut..]);
            prop_assert_eq!(h.finalize(), Digest::of(&bytes));
        }
    }
}
