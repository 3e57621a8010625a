//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1), as registries send
//! them: `Bearer realm="...",service="...",scope="..."` or `Basic
//! realm="..."`.

use std::collections::BTreeMap;

use crate::error::{ProxyError, Result};

/// Longest challenge header parsed: registries send a few hundred bytes.
const MAX_LEN: usize = 4096;

/// One parsed challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Get a token from `realm` (token.md), asking for `service` and
    /// `scope` as given.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter, if sent.
        service: Option<String>,
        /// The `scope` parameter, if sent.
        scope: Option<String>,
    },
    /// Send credentials with HTTP Basic.
    Basic,
}

impl Challenge {
    /// Parses the first challenge of a `WWW-Authenticate` value.
    pub fn parse(header: &str) -> Result<Challenge> {
        let bad = |why: &str| ProxyError::BadAuth(format!("challenge {header:?}: {why}"));
        if header.len() > MAX_LEN {
            return Err(ProxyError::BadAuth("challenge too long".into()));
        }
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Ok(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(bad("unknown scheme"));
        }
        let params = parse_params(rest).ok_or_else(|| bad("malformed parameters"))?;
        let realm = params
            .get("realm")
            .cloned()
            .ok_or_else(|| bad("no realm"))?;
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(bad("the realm is not an HTTP URL"));
        }
        Ok(Challenge::Bearer {
            realm,
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    }
}

/// `key="quoted \" value",key=token,...` into a map (keys lower-cased).
fn parse_params(text: &str) -> Option<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return None;
        }
        let after = after.trim_start();
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.push(chars.next()?.1),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        params.insert(key, value);
        rest = after.trim_start();
        if rest.is_empty() {
            break;
        }
        // Parameters are separated by commas.
        rest = rest.strip_prefix(',')?.trim_start();
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_challenge() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            }
        );
    }

    #[test]
    fn escapes_spaces_and_case() {
        let c = Challenge::parse(
            r#"bearer  Realm = "http://127.0.0.1:5000/auth/token" , service=reg\ istry , error="insufficient_scope""#,
        );
        let Ok(Challenge::Bearer {
            realm,
            service,
            scope,
        }) = c
        else {
            panic!("{c:?}");
        };
        assert_eq!(realm, "http://127.0.0.1:5000/auth/token");
        assert_eq!(service.as_deref(), Some(r"reg\ istry"));
        assert_eq!(scope, None);
        let c = Challenge::parse(r#"Bearer realm="https://a/t",scope="x \"y\"""#).unwrap();
        assert!(matches!(c, Challenge::Bearer { scope: Some(s), .. } if s == r#"x "y""#));
    }

    #[test]
    fn basic() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="registry""#).unwrap(),
            Challenge::Basic
        );
    }

    #[test]
    fn hostile_challenges_are_errors() {
        for bad in [
            "",
            "Negotiate abc",
            "Bearer",
            r#"Bearer service="x""#,
            r#"Bearer realm="file:///etc/passwd""#,
            r#"Bearer realm="https://a/t"#,
            r#"Bearer realm"#,
            r#"Bearer =x"#,
            &format!("Bearer realm=\"https://a/{}\"", "x".repeat(5000)),
        ] {
            assert!(Challenge::parse(bad).is_err(), "{bad:?}");
        }
    }
}
