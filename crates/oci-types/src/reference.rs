//! The `<reference>` of a manifest request: a tag or a digest.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::Error;
use crate::tag::Tag;

/// A manifest reference: a [`Tag`] or a [`Digest`]. A string containing `:`
/// is read as a digest (tags cannot contain `:`), anything else as a tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A mutable name for a manifest.
    Tag(Tag),
    /// A content address.
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.contains(':') {
            s.parse().map(Self::Digest)
        } else {
            s.parse().map(Self::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(t) => t.fmt(f),
            Self::Digest(d) => d.fmt(f),
        }
    }
}

impl From<Digest> for Reference {
    fn from(d: Digest) -> Self {
        Self::Digest(d)
    }
}

impl From<Tag> for Reference {
    fn from(t: Tag) -> Self {
        Self::Tag(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tag_or_digest() {
        assert!(matches!("latest".parse(), Ok(Reference::Tag(_))));
        let d = Digest::of(b"a").to_string();
        assert!(matches!(d.parse(), Ok(Reference::Digest(_))));
        assert!(matches!(
            "sha256:zz".parse::<Reference>(),
            Err(Error::InvalidDigest { .. })
        ));
        assert!(matches!(
            "-x".parse::<Reference>(),
            Err(Error::InvalidTag { .. })
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            if let Ok(r) = s.parse::<Reference>() {
                prop_assert_eq!(r.to_string(), s);
            }
        }
    }
}
