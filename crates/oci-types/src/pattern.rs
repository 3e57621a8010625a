//! Glob patterns over repository names and tags, for policies (access
//! rules, immutable tags, retention): `*` matches within one path segment,
//! `**` across segments. `team/**` is every repository under `team/`,
//! `*/cache` is `a/cache` but not `a/b/cache`, `**` is all; `v*` is every
//! tag starting with `v` (tags have no segments, so `*` and `**` agree).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, clip};
use crate::{RepositoryName, Tag};

/// A compiled pattern: literal runs and wildcards.
#[derive(Clone, PartialEq, Eq)]
struct Glob {
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

impl Glob {
    /// Compiles `text`, whose characters must all satisfy `allowed` (or be
    /// `*`), at most `max_len` long.
    fn compile(text: &str, max_len: usize, allowed: fn(char) -> bool) -> Result<Glob, Error> {
        let bad = |reason: String| Error::InvalidPattern {
            value: clip(text),
            reason,
        };
        if text.is_empty() || text.len() > max_len {
            return Err(bad(format!("must be 1 to {max_len} characters")));
        }
        if let Some(c) = text.chars().find(|&c| c != '*' && !allowed(c)) {
            return Err(bad(format!("{c:?} cannot occur in what it matches")));
        }
        if text.contains("***") {
            return Err(bad("use * or **".into()));
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
        Ok(Glob {
            text: text.to_owned(),
            parts,
        })
    }

    fn matches(&self, text: &str) -> bool {
        matches(&self.parts, text)
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

/// Defines a pattern type over `$target` with its parse rules.
macro_rules! pattern_type {
    ($(#[$doc:meta])* $name:ident, $target:ty, $max:expr, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(Glob);

        impl $name {
            /// The pattern as written.
            pub fn as_str(&self) -> &str {
                &self.0.text
            }

            /// True if the whole of `value` matches.
            pub fn matches(&self, value: &$target) -> bool {
                self.0.matches(value.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Glob::compile(text, $max, $allowed).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

pattern_type!(
    /// A pattern over repository names (`team/**`, `*/cache`).
    RepositoryPattern,
    RepositoryName,
    RepositoryName::MAX_LEN,
    |c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c)
);

pattern_type!(
    /// A pattern over tags (`v*`, `latest`).
    TagPattern,
    Tag,
    Tag::MAX_LEN,
    |c| c.is_ascii_alphanumeric() || "._-".contains(c)
);

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        let p: RepositoryPattern = pattern.parse().unwrap();
        p.matches(&name.parse().unwrap())
    }

    fn t(pattern: &str, tag: &str) -> bool {
        let p: TagPattern = pattern.parse().unwrap();
        p.matches(&tag.parse().unwrap())
    }

    #[test]
    fn repository_wildcards() {
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
    fn tag_wildcards() {
        assert!(t("v*", "v1.2.3"));
        assert!(!t("v*", "latest"));
        assert!(t("latest", "latest"));
        assert!(t("*-rc*", "1.0-rc2"));
        assert!(t("**", "Anything_1"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "Team/**", "a b", "a/***", "a?"] {
            assert!(bad.parse::<RepositoryPattern>().is_err(), "{bad:?}");
        }
        for bad in ["", "v/*", "a b", "v***"] {
            assert!(bad.parse::<TagPattern>().is_err(), "{bad:?}");
        }
    }
}
