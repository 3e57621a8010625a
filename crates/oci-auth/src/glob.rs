//! Repository patterns of access rules: `*` matches within one path
//! segment, `**` across segments (`team/**` is every repository under
//! `team/`, `*/cache` is `a/cache` but not `a/b/cache`, `**` is all).

use std::fmt;
use std::str::FromStr;

use oci_types::RepositoryName;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::AuthError;

/// A compiled repository pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct RepositoryPattern {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `*`: any characters but `/`.
    Segment,
    /// `**`: any characters.
    Any,
}

impl RepositoryPattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True if `name` matches the whole pattern.
    pub fn matches(&self, name: &RepositoryName) -> bool {
        matches(&self.parts, name.as_str())
    }
}

/// Backtracking match; patterns are short and wildcards few, so this is
/// cheap (at most a few hundred steps for real names).
fn matches(parts: &[Part], text: &str) -> bool {
    match parts.split_first() {
        None => text.is_empty(),
        Some((Part::Literal(lit), rest)) => text
            .strip_prefix(lit.as_str())
            .is_some_and(|t| matches(rest, t)),
        Some((wild, rest)) => {
            let limit = match wild {
                Part::Segment => text.find('/').unwrap_or(text.len()),
                _ => text.len(),
            };
            (0..=limit)
                .rev()
                .filter(|&i| text.is_char_boundary(i))
                .any(|i| matches(rest, &text[i..]))
        }
    }
}

impl FromStr for RepositoryPattern {
    type Err = AuthError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| AuthError::Config(format!("repository pattern {text:?}: {why}"));
        if text.is_empty() || text.len() > RepositoryName::MAX_LEN {
            return Err(bad("must be 1 to 255 characters"));
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/*".contains(*c)))
        {
            return Err(bad(&format!("{c:?} cannot occur in a repository name")));
        }
        if text.contains("***") {
            return Err(bad("use * or **"));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("**") {
                parts.push(Part::Any);
                rest = r;
            } else if let Some(r) = rest.strip_prefix('*') {
                parts.push(Part::Segment);
                rest = r;
            } else {
                let end = rest.find('*').unwrap_or(rest.len());
                parts.push(Part::Literal(rest[..end].to_owned()));
                rest = &rest[end..];
            }
        }
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }
}

impl fmt::Display for RepositoryPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for RepositoryPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepositoryPattern({:?})", self.text)
    }
}

impl Serialize for RepositoryPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for RepositoryPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        let p: RepositoryPattern = pattern.parse().unwrap();
        p.matches(&name.parse().unwrap())
    }

    #[test]
    fn wildcards() {
        assert!(m("team/**", "team/a"));
        assert!(m("team/**", "team/a/b/c"));
        assert!(!m("team/**", "team"));
        assert!(!m("team/**", "teamx/a"));
        assert!(m("*/cache", "a/cache"));
        assert!(!m("*/cache", "a/b/cache"));
        assert!(m("**/cache", "a/b/cache"));
        assert!(m("**", "anything/at/all"));
        assert!(m("lib*", "library"));
        assert!(!m("lib*", "library/x"));
        assert!(m("library/alpine", "library/alpine"));
        assert!(!m("library/alpine", "library/alpine2"));
        assert!(m("a/*/c", "a/b/c"));
        assert!(!m("a/*/c", "a/b/x/c"));
        assert!(m("*-prod/**", "web-prod/api"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "Team/**", "a b", "a/***", "a?"] {
            assert!(bad.parse::<RepositoryPattern>().is_err(), "{bad:?}");
        }
    }
}
