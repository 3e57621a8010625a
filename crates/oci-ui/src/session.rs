//! Sessions and CSRF tokens, stateless and shared by every replica.
//!
//! A session is a cookie holding who is logged in (nobody, for a visitor),
//! when the session expires and a random nonce, signed with HMAC-SHA256
//! under a key kept in storage (`_keys/ui-session-key`, created by the
//! first replica: see [`oci_storage::SharedKey::UiSession`]). Any replica
//! verifies any session; nothing is kept in a process.
//!
//! Every visitor gets a session (an anonymous one at first) so that every
//! form, the login form included, carries a CSRF token: the HMAC of the
//! session's nonce, which a page of another site can neither read nor
//! forge. The cookie is `HttpOnly`, `SameSite=Strict` and, under TLS,
//! `Secure`. Logging in and out issues a new session with a new nonce
//! (no session fixation). A session cannot be revoked before it expires
//! (stateless): keep `[ui] session_ttl` short where that matters.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

/// The session cookie's name.
pub const COOKIE: &str = "oci_ui_session";

/// Longest cookie value read.
const MAX_COOKIE: usize = 2048;

/// Signs and verifies sessions.
#[derive(Clone)]
pub(crate) struct Keys {
    key: hmac::Key,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys")
    }
}

/// A verified (or new) session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// The logged-in user, if any.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Expiry, Unix seconds.
    #[serde(rename = "e")]
    pub expires: u64,
    /// Random, hex: what CSRF tokens are bound to.
    #[serde(rename = "n")]
    pub nonce: String,
}

/// 32 random bytes from the operating system's CSPRNG (`getrandom`: no
/// seeding of a userspace generator at start).
pub(crate) fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the system's random source works");
    bytes
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Session {
    /// A new session for `user` (anonymous: `None`) lasting `ttl`.
    pub fn new(user: Option<String>, ttl: Duration) -> Self {
        let nonce: String = random_bytes()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            user,
            expires: now_secs().saturating_add(ttl.as_secs()),
            nonce,
        }
    }
}

impl Keys {
    /// Keys from the shared secret.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    fn sign(&self, what: &[u8]) -> String {
        B64.encode(hmac::sign(&self.key, what).as_ref())
    }

    fn verify(&self, what: &[u8], mac: &str) -> bool {
        B64.decode(mac)
            .is_ok_and(|mac| hmac::verify(&self.key, what, &mac).is_ok())
    }

    /// The cookie value of `session`: `<payload>.<mac>`.
    fn encode(&self, session: &Session) -> String {
        let json = serde_json::to_vec(session).expect("a session serialises");
        let payload = B64.encode(json);
        let mac = self.sign(format!("session:{payload}").as_bytes());
        format!("{payload}.{mac}")
    }

    /// The session in the request's cookie, if it is genuine and current.
    pub fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let value = cookie(headers, COOKIE)?;
        if value.len() > MAX_COOKIE {
            return None;
        }
        let (payload, mac) = value.split_once('.')?;
        if !self.verify(format!("session:{payload}").as_bytes(), mac) {
            return None;
        }
        let session: Session = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
        (session.expires > now_secs()).then_some(session)
    }

    /// The `Set-Cookie` value that stores `session`.
    pub fn set_cookie(&self, session: &Session, path: &str, secure: bool) -> HeaderValue {
        let max_age = session.expires.saturating_sub(now_secs());
        let secure = if secure { "; Secure" } else { "" };
        let value = format!(
            "{COOKIE}={}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
            self.encode(session)
        );
        HeaderValue::try_from(value).expect("a cookie of base64 and a validated path")
    }

    /// The CSRF token of forms shown in `session`.
    pub fn csrf(&self, session: &Session) -> String {
        self.sign(format!("csrf:{}", session.nonce).as_bytes())
    }

    /// True if `token` is the CSRF token of `session`.
    pub fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        self.verify(format!("csrf:{}", session.nonce).as_bytes(), token)
    }
}

/// The value of the cookie `name`, if the request sent one.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_with(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        h
    }

    #[test]
    fn sessions_round_trip_and_forgeries_fail() {
        let keys = Keys::new(b"secret");
        let s = Session::new(Some("alice".into()), Duration::from_secs(60));
        let set = keys.set_cookie(&s, "/ui/", true);
        let set = set.to_str().unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(set.ends_with("; Secure"));
        let value = set.split(';').next().unwrap();
        assert_eq!(keys.session(&headers_with(value)), Some(s.clone()));
        // Another key, a changed payload, an expired session: refused.
        assert_eq!(Keys::new(b"other").session(&headers_with(value)), None);
        let forged = Session {
            user: Some("admin".into()),
            ..s.clone()
        };
        let forged_payload = B64.encode(serde_json::to_vec(&forged).unwrap());
        let mac = value.rsplit('.').next().unwrap();
        let forged = format!("{COOKIE}={forged_payload}.{mac}");
        assert_eq!(keys.session(&headers_with(&forged)), None);
        let mut old = s.clone();
        old.expires = 1;
        let old = keys.set_cookie(&old, "/ui/", false);
        let old = old.to_str().unwrap().split(';').next().unwrap().to_owned();
        assert_eq!(keys.session(&headers_with(&old)), None);
        // CSRF tokens are bound to the session's nonce.
        let token = keys.csrf(&s);
        assert!(keys.csrf_ok(&s, &token));
        let other = Session::new(Some("alice".into()), Duration::from_secs(60));
        assert!(!keys.csrf_ok(&other, &token));
        assert!(!keys.csrf_ok(&s, "garbage"));
    }
}
