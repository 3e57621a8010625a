//! Repository names (distribution-spec "Pulling manifests", `<name>`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, clip};

/// A repository name such as `library/ubuntu`.
///
/// Follows the spec's grammar
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
/// and is at most [`RepositoryName::MAX_LEN`] bytes long. Anything that could
/// escape a storage prefix (`..`, empty segments, upper case, percent
/// escapes) is rejected by construction.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

impl RepositoryName {
    /// Longest accepted name. The spec notes that many clients limit
    /// `host/name` to 255 characters; we bound the name alone by that.
    pub const MAX_LEN: usize = 255;

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks one `/`-separated component against
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn component_is_valid(c: &[u8]) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        // An alphanumeric run, at least one byte.
        let start = i;
        while i < c.len() && alnum(c[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == c.len() {
            return true;
        }
        // A separator run, then another alphanumeric run must follow.
        let start = i;
        while i < c.len() && !alnum(c[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, b"." | b"_" | b"__") || sep.iter().all(|&b| b == b'-');
        if !ok {
            return false;
        }
    }
}

impl FromStr for RepositoryName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidName {
            value: clip(s),
            reason,
        };
        if s.is_empty() {
            return Err(invalid("empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(invalid("longer than 255 characters"));
        }
        if !s.split('/').all(|c| component_is_valid(c.as_bytes())) {
            return Err(invalid(
                "components must match [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl AsRef<str> for RepositoryName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepositoryName({})", self.0)
    }
}

impl Serialize for RepositoryName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RepositoryName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_spec_examples() {
        for ok in [
            "a",
            "library/ubuntu",
            "my-org/my.app_v2",
            "a__b",
            "a---b",
            "0/1/2/3",
            "foo/blobs/uploads",
            "x.y_z-w",
        ] {
            assert!(ok.parse::<RepositoryName>().is_ok(), "{ok:?} should parse");
        }
        assert!("a".repeat(255).parse::<RepositoryName>().is_ok());
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "A",
            "Library/ubuntu",
            "../x",
            "a/../b",
            "a//b",
            "/a",
            "a/",
            "a___b",
            "a..b",
            "a._b",
            "-a",
            "a-",
            "_a",
            ".a",
            "a%2Fb",
            "a b",
            "a:b",
            "ä",
            "a/\u{0}",
        ] {
            assert!(
                bad.parse::<RepositoryName>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!("a".repeat(256).parse::<RepositoryName>().is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = s.parse::<RepositoryName>();
        }

        #[test]
        fn valid_names_round_trip(s in "[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,2}(/[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,2}){0,3}") {
            let name: RepositoryName = s.parse().unwrap();
            prop_assert_eq!(name.to_string(), s);
        }
    }
}
