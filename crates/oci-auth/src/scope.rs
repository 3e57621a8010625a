//! Token scopes (distribution's `docs/spec/auth/scope.md`):
//! `repository:<name>:<actions>` and `registry:catalog:*`, and the
//! `access` claim of a token that carries them.

use oci_types::RepositoryName;
use serde::{Deserialize, Serialize};

use crate::action::Actions;

/// What a scope is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `repository:<name>`.
    Repository(RepositoryName),
    /// `registry:catalog`: listing the repositories.
    Catalog,
}

/// One requested or granted scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// What.
    pub resource: Resource,
    /// Which actions (for the catalog, [`Actions::ALL`] stands for `*`).
    pub actions: Actions,
}

impl Scope {
    /// Parses `repository:name:pull,push` or `registry:catalog:*`. A scope
    /// of another type, a malformed name or no known action gives `None`:
    /// the token endpoint grants nothing for it (scope.md: "unknown
    /// resource types are ignored").
    ///
    /// The name is between the first and the last `:`; a resource class
    /// (`repository(plugin)`) is ignored.
    pub fn parse(text: &str) -> Option<Scope> {
        let (kind, rest) = text.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split_once('(').map_or(kind, |(k, _)| k);
        match (kind, name) {
            ("repository", name) => {
                let actions = Actions::parse_list(actions);
                let name = name.parse().ok()?;
                (!actions.is_empty()).then_some(Scope {
                    resource: Resource::Repository(name),
                    actions,
                })
            }
            ("registry", "catalog") if actions.split(',').any(|a| a.trim() == "*") => Some(Scope {
                resource: Resource::Catalog,
                actions: Actions::ALL,
            }),
            _ => None,
        }
    }

    /// A scope string for `WWW-Authenticate`, e.g. `repository:a/b:pull`.
    pub fn to_challenge(&self) -> String {
        match &self.resource {
            Resource::Repository(name) => format!("repository:{name}:{}", self.actions),
            Resource::Catalog => "registry:catalog:*".to_owned(),
        }
    }
}

/// One entry of a token's `access` claim (jwt.md): `{"type":
/// "repository", "name": "a/b", "actions": ["pull"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository name, or `catalog`.
    pub name: String,
    /// Granted actions.
    pub actions: Vec<String>,
}

impl From<&Scope> for AccessEntry {
    fn from(scope: &Scope) -> Self {
        match &scope.resource {
            Resource::Repository(name) => AccessEntry {
                kind: "repository".into(),
                name: name.to_string(),
                actions: scope.actions.iter().map(|a| a.as_str().into()).collect(),
            },
            Resource::Catalog => AccessEntry {
                kind: "registry".into(),
                name: "catalog".into(),
                actions: vec!["*".into()],
            },
        }
    }
}

impl AccessEntry {
    /// The scope this entry grants, if it is one the registry knows.
    pub fn to_scope(&self) -> Option<Scope> {
        Scope::parse(&format!(
            "{}:{}:{}",
            self.kind,
            self.name,
            self.actions.join(",")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;

    #[test]
    fn scopes_parse() {
        let s = Scope::parse("repository:team/app:pull,push").unwrap();
        assert_eq!(
            s.resource,
            Resource::Repository("team/app".parse().unwrap())
        );
        assert_eq!(s.actions, Actions::parse_list("pull,push"));
        assert_eq!(s.to_challenge(), "repository:team/app:pull,push");
        let s = Scope::parse("repository(plugin):a:pull").unwrap();
        assert_eq!(s.actions, Action::Pull.into());
        assert_eq!(
            Scope::parse("registry:catalog:*").unwrap().resource,
            Resource::Catalog
        );
        for ignored in [
            "registry:catalog:pull",
            "repository:Bad:pull",
            "repository:a:frob",
            "repository:a",
            "other:a:pull",
            "",
        ] {
            assert_eq!(Scope::parse(ignored), None, "{ignored:?}");
        }
    }

    #[test]
    fn access_entries_round_trip() {
        for text in ["repository:a/b:pull,delete", "registry:catalog:*"] {
            let scope = Scope::parse(text).unwrap();
            let entry = AccessEntry::from(&scope);
            assert_eq!(entry.to_scope(), Some(scope));
        }
    }
}
