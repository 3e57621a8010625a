//! Retention (`[[retention]]`): which tags, and which untagged manifests,
//! a garbage collection drops.
//!
//! A repository follows the first rule whose `repositories` match it;
//! repositories no rule matches keep everything. Within a rule:
//!
//! - **Tags.** Kept: the `keep_last` most recently pushed tags, every tag
//!   pushed within `keep_within`, every tag matching `keep_tags`, and every
//!   immutable tag. A rule with none of the three keeps every tag. Push
//!   times are those the store records when a tag is written (see
//!   `Storage::tag_pushed_at`), not object dates. A dropped tag is removed
//!   only if, at that moment, it still names the manifest it was judged
//!   by and was not pushed again since (a compare-and-delete on the tag).
//! - **Untagged manifests** (with `delete_untagged`): a manifest no tag
//!   names after the tags above went, whose link is older than the grace
//!   period, and that no kept manifest needs: index children of kept
//!   manifests, and referrers whose subject is kept (recursively), stay.
//!   Dropped manifests are removed like a delete by digest, in the sweep
//!   phase and under the collection's protocol (see `crate::gc`).

use std::time::{Duration, SystemTime};

use oci_types::{RepositoryName, RepositoryPattern, Tag, TagPattern};
use serde::{Deserialize, Serialize};

/// One `[[retention]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Repository patterns (as in the access policy).
    pub repositories: Vec<RepositoryPattern>,
    /// Keep this many most recently pushed tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<usize>,
    /// Keep every tag pushed within this long (`30d`).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_within: Option<Duration>,
    /// Always keep tags matching these patterns (`latest`, `v*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_tags: Vec<TagPattern>,
    /// Drop manifests no tag names (older than the grace period, and
    /// needed by no kept manifest).
    #[serde(default)]
    pub delete_untagged: bool,
}

impl RetentionRule {
    /// True if the rule applies to `name`.
    pub fn covers(&self, name: &RepositoryName) -> bool {
        self.repositories.iter().any(|r| r.matches(name))
    }

    /// True if the rule limits tags at all.
    fn limits_tags(&self) -> bool {
        self.keep_last.is_some() || self.keep_within.is_some() || !self.keep_tags.is_empty()
    }

    /// Which of `tags` (each with its push time) the rule keeps at `now`,
    /// in the same order. `pinned` tags (immutable ones) are always kept.
    pub fn kept(
        &self,
        tags: &[(Tag, SystemTime)],
        now: SystemTime,
        pinned: impl Fn(&Tag) -> bool,
    ) -> Vec<bool> {
        if !self.limits_tags() {
            return vec![true; tags.len()];
        }
        let mut kept: Vec<bool> = tags
            .iter()
            .map(|(tag, pushed)| {
                pinned(tag)
                    || self.keep_tags.iter().any(|p| p.matches(tag))
                    || self.keep_within.is_some_and(|within| {
                        now.duration_since(*pushed).unwrap_or_default() <= within
                    })
            })
            .collect();
        if let Some(last) = self.keep_last {
            // Newest first; ties broken by name, so the choice is stable.
            let mut order: Vec<usize> = (0..tags.len()).collect();
            order.sort_by(|&a, &b| tags[b].1.cmp(&tags[a].1).then(tags[a].0.cmp(&tags[b].0)));
            for &i in order.iter().take(last) {
                kept[i] = true;
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml: &str) -> RetentionRule {
        serde_json::from_value(serde_json::to_value(toml_like(toml)).expect("a rule"))
            .expect("a rule")
    }

    /// A tiny `key = value` reader for the tests' rules (JSON values).
    fn toml_like(text: &str) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once('=').expect("key = value");
            map.insert(
                k.trim().into(),
                serde_json::from_str(v.trim()).expect("JSON value"),
            );
        }
        serde_json::Value::Object(map)
    }

    fn tags(names: &[(&str, u64)]) -> Vec<(Tag, SystemTime)> {
        names
            .iter()
            .map(|(n, secs)| {
                (
                    n.parse().unwrap(),
                    SystemTime::UNIX_EPOCH + Duration::from_secs(*secs),
                )
            })
            .collect()
    }

    fn kept_names(rule: &RetentionRule, tags: &[(Tag, SystemTime)], now: u64) -> Vec<String> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
        rule.kept(tags, now, |t| t.as_str() == "pinned")
            .iter()
            .zip(tags)
            .filter(|(k, _)| **k)
            .map(|(_, (t, _))| t.to_string())
            .collect()
    }

    #[test]
    fn keep_last_within_and_tags_combine() {
        let r = rule(
            r#"repositories = ["ci/**"]
               keep_last = 2
               keep_within = "100s"
               keep_tags = ["latest", "v*"]"#,
        );
        let t = tags(&[
            ("a", 10),
            ("b", 20),
            ("c", 900),
            ("d", 950),
            ("e", 1000),
            ("latest", 5),
            ("v1", 1),
            ("pinned", 0),
        ]);
        // Last two: e, d; within 100 s of 1000: c, d, e; tags: latest, v1;
        // pinned always.
        assert_eq!(
            kept_names(&r, &t, 1000),
            ["c", "d", "e", "latest", "v1", "pinned"]
        );
    }

    #[test]
    fn no_keep_key_keeps_every_tag() {
        let r = rule(
            r#"repositories = ["**"]
               delete_untagged = true"#,
        );
        let t = tags(&[("a", 1), ("b", 2)]);
        assert_eq!(kept_names(&r, &t, 1_000_000), ["a", "b"]);
    }

    #[test]
    fn keep_last_ties_break_by_name() {
        let r = rule(
            r#"repositories = ["**"]
               keep_last = 1"#,
        );
        let t = tags(&[("b", 5), ("a", 5)]);
        assert_eq!(kept_names(&r, &t, 10), ["a"]);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let bad = serde_json::json!({"repositories": ["**"], "keep_latest": 3});
        assert!(serde_json::from_value::<RetentionRule>(bad).is_err());
    }

    #[test]
    fn covers_by_glob() {
        let r = rule(r#"repositories = ["ci/**"]"#);
        assert!(r.covers(&"ci/a/b".parse().unwrap()));
        assert!(!r.covers(&"prod/a".parse().unwrap()));
    }
}
