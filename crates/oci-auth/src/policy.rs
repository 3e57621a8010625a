//! Who may do what where: the `[access]` section.
//!
//! - Admins may do everything everywhere.
//! - With no rules, every authenticated user may do everything and
//!   anonymous callers nothing.
//! - Otherwise a caller may do the union of the actions of every rule that
//!   names them (as a user, through a group, as `authenticated`, or as
//!   `anonymous`, which names everyone: logging in never takes a right
//!   away) and matches the repository. Nothing else.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use oci_types::RepositoryName;
use serde::{Deserialize, Serialize};

use crate::action::Actions;
use crate::error::AuthError;
use oci_types::RepositoryPattern;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// No credentials were given.
    Anonymous,
    /// An account of the htpasswd file, or a user an OIDC token named
    /// (shared: cheap to clone for every request).
    User(Arc<str>),
}

impl Principal {
    /// The user name, or `None` when anonymous.
    pub fn user(&self) -> Option<&str> {
        match self {
            Self::Anonymous => None,
            Self::User(name) => Some(name),
        }
    }

    /// The user name, shared, or `None` when anonymous.
    pub fn shared_user(&self) -> Option<Arc<str>> {
        match self {
            Self::Anonymous => None,
            Self::User(name) => Some(Arc::clone(name)),
        }
    }
}

/// The name for logs: the user, or `-`.
impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.user().unwrap_or("-"))
    }
}

/// The `[access]` section as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Users who may do everything everywhere.
    #[serde(default)]
    pub admins: Vec<String>,
    /// Named groups of users, for rules.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// The rules (`[[access.rules]]`).
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// One `[[access.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Repository patterns the rule covers (see [`RepositoryPattern`]).
    pub repositories: Vec<RepositoryPattern>,
    /// Users the rule names.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups the rule names.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The rule applies to everyone, with or without credentials (a user
    /// who logs in keeps what anonymous callers may do).
    #[serde(default)]
    pub anonymous: bool,
    /// The rule applies to every authenticated user.
    #[serde(default)]
    pub authenticated: bool,
    /// What the rule allows.
    pub actions: Actions,
}

/// The compiled policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    admins: HashSet<String>,
    /// Each user's groups.
    memberships: HashMap<String, HashSet<String>>,
    rules: Vec<RuleConfig>,
}

impl Policy {
    /// Checks and compiles `[access]`: every rule names repositories,
    /// someone and actions, and only groups that exist.
    pub fn new(config: &AccessConfig) -> Result<Self, AuthError> {
        let mut memberships: HashMap<String, HashSet<String>> = HashMap::new();
        for (group, users) in &config.groups {
            for user in users {
                memberships
                    .entry(user.clone())
                    .or_default()
                    .insert(group.clone());
            }
        }
        for (i, rule) in config.rules.iter().enumerate() {
            let bad = |why: &str| AuthError::Config(format!("access.rules[{i}]: {why}"));
            if rule.repositories.is_empty() {
                return Err(bad("no repositories"));
            }
            if rule.actions.is_empty() {
                return Err(bad("no actions"));
            }
            if rule.users.is_empty()
                && rule.groups.is_empty()
                && !rule.anonymous
                && !rule.authenticated
            {
                return Err(bad(
                    "names no one (users, groups, anonymous = true or authenticated = true)",
                ));
            }
            if let Some(g) = rule.groups.iter().find(|g| !config.groups.contains_key(*g)) {
                return Err(bad(&format!("group {g:?} is not in [access.groups]")));
            }
        }
        Ok(Self {
            admins: config.admins.iter().cloned().collect(),
            memberships,
            rules: config.rules.clone(),
        })
    }

    /// True if `who` is an admin.
    pub fn is_admin(&self, who: &Principal) -> bool {
        who.user().is_some_and(|u| self.admins.contains(u))
    }

    /// What `who` may do in `repository`.
    pub fn granted(&self, who: &Principal, repository: &RepositoryName) -> Actions {
        if self.is_admin(who) {
            return Actions::ALL;
        }
        if self.rules.is_empty() {
            return match who {
                Principal::Anonymous => Actions::NONE,
                Principal::User(_) => Actions::ALL,
            };
        }
        self.rules
            .iter()
            .filter(|rule| self.names(rule, who))
            .filter(|rule| rule.repositories.iter().any(|p| p.matches(repository)))
            .fold(Actions::NONE, |set, rule| set.union(rule.actions))
    }

    /// True if some rule gives `who` anything anywhere (or `who` is an
    /// admin, or a user under the no-rules default). A caller for whom
    /// this is false is challenged to log in rather than shown an empty
    /// catalog.
    pub fn grants_anything(&self, who: &Principal) -> bool {
        self.is_admin(who)
            || match who {
                Principal::User(_) if self.rules.is_empty() => true,
                _ => self.rules.iter().any(|rule| self.names(rule, who)),
            }
    }

    /// True if `who` may pull from every repository there is or will be
    /// (an admin, a user under the no-rules default, or a rule for `**`).
    pub fn reads_everywhere(&self, who: &Principal) -> bool {
        use crate::action::Action;
        self.is_admin(who)
            || (self.rules.is_empty() && who.user().is_some())
            || self.rules.iter().any(|rule| {
                self.names(rule, who)
                    && rule.actions.contains(Action::Pull)
                    && rule.repositories.iter().any(|p| p.as_str() == "**")
            })
    }

    fn names(&self, rule: &RuleConfig, who: &Principal) -> bool {
        match who {
            Principal::Anonymous => rule.anonymous,
            Principal::User(user) => {
                rule.anonymous
                    || rule.authenticated
                    || rule.users.iter().any(|u| **u == **user)
                    || self
                        .memberships
                        .get(&**user)
                        .is_some_and(|groups| rule.groups.iter().any(|g| groups.contains(g)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;

    fn policy(toml: &str) -> Policy {
        let config: AccessConfig = serde_json::from_str(toml).unwrap();
        Policy::new(&config).unwrap()
    }

    fn user(name: &str) -> Principal {
        Principal::User(name.into())
    }

    fn repo(name: &str) -> RepositoryName {
        name.parse().unwrap()
    }

    #[test]
    fn no_rules_means_users_everything_anonymous_nothing() {
        let p = policy("{}");
        assert_eq!(p.granted(&user("x"), &repo("a")), Actions::ALL);
        assert_eq!(p.granted(&Principal::Anonymous, &repo("a")), Actions::NONE);
        assert!(!p.grants_anything(&Principal::Anonymous));
    }

    #[test]
    fn rules_add_up() {
        let p = policy(
            r#"{"admins":["root"],"groups":{"devs":["alice","bob"]},"rules":[
                {"repositories":["team/**"],"groups":["devs"],"actions":["pull","push"]},
                {"repositories":["team/alice/**"],"users":["alice"],"actions":["delete"]},
                {"repositories":["public/*"],"anonymous":true,"actions":["pull"]},
                {"repositories":["shared"],"authenticated":true,"actions":["pull"]}]}"#,
        );
        let pp = Actions::parse_list("pull,push");
        assert_eq!(
            p.granted(&user("alice"), &repo("team/alice/x")),
            Actions::ALL
        );
        assert_eq!(p.granted(&user("bob"), &repo("team/alice/x")), pp);
        assert_eq!(p.granted(&user("carol"), &repo("team/x")), Actions::NONE);
        assert_eq!(
            p.granted(&user("carol"), &repo("shared")),
            Action::Pull.into()
        );
        assert_eq!(
            p.granted(&Principal::Anonymous, &repo("shared")),
            Actions::NONE
        );
        assert_eq!(
            p.granted(&Principal::Anonymous, &repo("public/a")),
            Action::Pull.into()
        );
        assert_eq!(
            p.granted(&Principal::Anonymous, &repo("public/a/b")),
            Actions::NONE
        );
        assert_eq!(p.granted(&user("root"), &repo("anything")), Actions::ALL);
        assert!(p.grants_anything(&Principal::Anonymous));
        assert!(p.reads_everywhere(&user("root")));
        assert!(!p.reads_everywhere(&user("alice")));
        assert!(!p.reads_everywhere(&Principal::Anonymous));
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in [
            r#"{"rules":[{"repositories":[],"users":["a"],"actions":["pull"]}]}"#,
            r#"{"rules":[{"repositories":["a"],"actions":["pull"]}]}"#,
            r#"{"rules":[{"repositories":["a"],"users":["a"],"actions":[]}]}"#,
            r#"{"rules":[{"repositories":["a"],"groups":["nope"],"actions":["pull"]}]}"#,
        ] {
            let config: AccessConfig = serde_json::from_str(bad).unwrap();
            assert!(Policy::new(&config).is_err(), "{bad}");
        }
    }
}
