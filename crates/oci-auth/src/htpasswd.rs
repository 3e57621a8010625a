//! Accounts from an htpasswd file, bcrypt entries only (`htpasswd -B`
//! writes them; `$2y$`, `$2a$` and `$2b$` are accepted). Other schemes
//! (`{SHA}`, `$apr1$`, crypt) are weak and refused at load, naming the
//! line.
//!
//! Checking a password takes as long for an unknown user as for a known
//! one: unknown users are checked against a dummy hash of the file's
//! highest cost, so response times do not reveal which accounts exist.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{AuthError, Result};

/// The accounts of one htpasswd file.
#[derive(Clone)]
pub struct Htpasswd {
    path: PathBuf,
    entries: HashMap<String, String>,
    /// A valid hash of a random password at the highest cost in the file.
    dummy: String,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes.
        f.debug_struct("Htpasswd")
            .field("path", &self.path)
            .field("accounts", &self.entries.len())
            .finish()
    }
}

impl Htpasswd {
    /// Reads and checks the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses the file's text (`path` is for messages).
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let bad = |line: usize, message: &str| AuthError::File {
            path: path.to_owned(),
            message: format!("line {line}: {message}"),
        };
        let mut entries = HashMap::new();
        let mut cost: Option<u32> = None;
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(bad(line_no, "expected user:hash"));
            };
            if user.is_empty() {
                return Err(bad(line_no, "empty user name"));
            }
            let Some(entry_cost) = bcrypt_cost(hash) else {
                return Err(bad(
                    line_no,
                    &format!("the entry of {user:?} is not bcrypt; create it with `htpasswd -B`"),
                ));
            };
            cost = Some(cost.map_or(entry_cost, |c| c.max(entry_cost)));
            if entries.insert(user.to_owned(), hash.to_owned()).is_some() {
                return Err(bad(line_no, &format!("{user:?} appears twice")));
            }
        }
        let cost = cost.unwrap_or(bcrypt::DEFAULT_COST);
        let dummy = bcrypt::hash(uuid::Uuid::new_v4().to_string(), cost)
            .map_err(|e| AuthError::Key(format!("bcrypt: {e}")))?;
        Ok(Self {
            path: path.to_owned(),
            entries,
            dummy,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if `user` has an account.
    pub fn contains(&self, user: &str) -> bool {
        self.entries.contains_key(user)
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the file has no accounts.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True if `user` exists and `password` is theirs. Slow on purpose
    /// (bcrypt): call it off the async workers. Takes as long for unknown
    /// users.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let (hash, known) = match self.entries.get(user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.dummy.as_str(), false),
        };
        // bcrypt compares in constant time; a malformed hash is a refusal.
        bcrypt::verify(password, hash).unwrap_or(false) && known
    }
}

/// The cost of a bcrypt hash (`$2y$10$...`), or `None` if it is none.
fn bcrypt_cost(hash: &str) -> Option<u32> {
    let rest = ["$2y$", "$2a$", "$2b$"]
        .iter()
        .find_map(|p| hash.strip_prefix(p))?;
    let (cost, salted) = rest.split_once('$')?;
    let cost: u32 = cost.parse().ok()?;
    ((4..=31).contains(&cost) && salted.len() == 53).then_some(cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<Htpasswd> {
        Htpasswd::parse(Path::new("htpasswd"), text)
    }

    #[test]
    fn bcrypt_entries_verify() {
        let alice = bcrypt::hash("wonderland", 4)
            .unwrap()
            .replace("$2b$", "$2y$");
        let h = file(&format!("# accounts\n\nalice:{alice}\n")).unwrap();
        assert_eq!(h.len(), 1);
        assert!(h.verify("alice", "wonderland"));
        assert!(!h.verify("alice", "wonderlanD"));
        assert!(!h.verify("alice", ""));
        assert!(!h.verify("bob", "wonderland"));
        assert!(
            !format!("{h:?}").contains(&alice),
            "hashes stay out of Debug"
        );
    }

    #[test]
    fn weak_or_broken_entries_are_refused_with_their_line() {
        let good = bcrypt::hash("x", 4).unwrap();
        for (text, line) in [
            ("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=".to_owned(), 1),
            ("alice:$apr1$abc$def".to_owned(), 1),
            (format!("a:{good}\nnocolon"), 2),
            (format!("a:{good}\na:{good}"), 2),
            (format!(":{good}"), 1),
            ("alice:$2y$99$x".to_owned(), 1),
        ] {
            let err = file(&text).unwrap_err().to_string();
            assert!(err.contains(&format!("line {line}:")), "{err}");
        }
    }

    #[test]
    fn unknown_users_cost_a_hash_of_the_same_cost() {
        let h = file(&format!("a:{}", bcrypt::hash("x", 6).unwrap())).unwrap();
        assert_eq!(bcrypt_cost(&h.dummy), Some(6));
    }
}
