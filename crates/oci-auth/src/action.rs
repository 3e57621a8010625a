//! What a caller may do to a repository: `pull`, `push`, `delete`
//! (distribution's `docs/spec/auth/scope.md` names the same actions).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::AuthError;

/// One action on a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read manifests, blobs, tags and referrers (GET and HEAD).
    Pull,
    /// Upload blobs and put manifests.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// Every action, in the order they are written.
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    /// The action's name in scopes and config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
            Self::Delete => "delete",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Pull => 1,
            Self::Push => 2,
            Self::Delete => 4,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| AuthError::Config(format!("unknown action {s:?} (pull, push, delete)")))
    }
}

/// A set of [`Action`]s.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Actions(u8);

impl Actions {
    /// No action.
    pub const NONE: Actions = Actions(0);
    /// Every action.
    pub const ALL: Actions = Actions(7);

    /// True if `action` is in the set.
    pub fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    /// True if every action of `other` is in the set.
    pub fn contains_all(self, other: Actions) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The actions in both sets.
    pub fn intersection(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }

    /// The actions in either set.
    pub fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    /// The actions, in [`Action::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |a| self.contains(*a))
    }

    /// Parses a scope's action list (`pull,push`; `*` is every action).
    /// Unknown actions are ignored, as the token spec asks of a registry
    /// that does not know them.
    pub fn parse_list(list: &str) -> Actions {
        list.split(',')
            .map(str::trim)
            .fold(Actions::NONE, |set, word| match word {
                "*" => Actions::ALL,
                word => word.parse::<Action>().map_or(set, |a| set.union(a.into())),
            })
    }
}

impl From<Action> for Actions {
    fn from(action: Action) -> Self {
        Actions(action.bit())
    }
}

impl FromIterator<Action> for Actions {
    fn from_iter<I: IntoIterator<Item = Action>>(iter: I) -> Self {
        iter.into_iter()
            .fold(Actions::NONE, |set, a| set.union(a.into()))
    }
}

/// `pull,push`.
impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(a.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Actions({self})")
    }
}

/// As a list of names, `["pull", "push"]`.
impl Serialize for Actions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Action::as_str))
    }
}

/// From a list of names; unlike [`Actions::parse_list`], an unknown name
/// is an error (a config typo must not silently grant less, or more).
impl<'de> Deserialize<'de> for Actions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names
            .iter()
            .map(|n| match n.as_str() {
                "*" => Ok(Actions::ALL),
                n => n.parse::<Action>().map(Actions::from),
            })
            .try_fold(Actions::NONE, |set, a| a.map(|a| set.union(a)))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_print() {
        assert_eq!(Actions::parse_list("pull,push").to_string(), "pull,push");
        assert_eq!(Actions::parse_list("push, pull").to_string(), "pull,push");
        assert_eq!(Actions::parse_list("*"), Actions::ALL);
        assert_eq!(Actions::parse_list("pull,frobnicate"), Action::Pull.into());
        assert!(Actions::parse_list("").is_empty());
        let set: Actions = serde_json::from_str(r#"["delete","pull"]"#).unwrap();
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"["pull","delete"]"#);
        assert!(serde_json::from_str::<Actions>(r#"["pul"]"#).is_err());
    }

    #[test]
    fn set_algebra() {
        let pp = Actions::parse_list("pull,push");
        assert!(pp.contains(Action::Push) && !pp.contains(Action::Delete));
        assert!(Actions::ALL.contains_all(pp) && !pp.contains_all(Actions::ALL));
        assert_eq!(pp.intersection(Action::Pull.into()), Action::Pull.into());
        assert_eq!(pp.union(Action::Delete.into()), Actions::ALL);
    }
}
