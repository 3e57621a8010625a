//! Small pieces every page uses: the request as pages see it, forms,
//! and how sizes and times are written.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, Method};

use crate::UiError;

/// Largest form body read.
const MAX_FORM: usize = 16 * 1024;

/// A request as the pages see it.
pub(crate) struct Request<'a> {
    pub method: &'a Method,
    /// The path below the UI's base (`r/team/app`).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// Taken once by [`Request::form`] (in a mutex so that pages can hold
    /// `&Request` across awaits: a body is `Send` but not `Sync`).
    pub body: std::sync::Mutex<Option<Body>>,
    pub client: IpAddr,
}

impl Request<'_> {
    /// The query's parameters (the first of each name).
    pub fn params(&self) -> HashMap<String, String> {
        parse_pairs(self.query.unwrap_or("").as_bytes())
    }

    /// The form fields of a POST (`application/x-www-form-urlencoded`,
    /// at most 16 KiB). A browser that says the form came from another
    /// site (`Sec-Fetch-Site: cross-site`) is refused before the CSRF
    /// token is even looked at.
    pub async fn form(self) -> Result<HashMap<String, String>, UiError> {
        if self
            .headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site")
        {
            return Err(UiError::Csrf);
        }
        let body = self
            .body
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(body, MAX_FORM)
            .await
            .map_err(|_| UiError::BadRequest("the form is too large or was cut short".into()))?;
        Ok(parse_pairs(&bytes))
    }
}

fn parse_pairs(bytes: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(bytes) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

/// `12.3 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

/// `2024-05-01 12:00:00 UTC`, or `-` for the epoch (unknown).
pub(crate) fn time(t: SystemTime) -> String {
    if t <= UNIX_EPOCH {
        return "-".into();
    }
    let text = humantime::format_rfc3339_seconds(t).to_string();
    text.replacen('T', " ", 1).replacen('Z', " UTC", 1)
}

/// The machine-readable form of [`time`] (`datetime` attributes).
pub(crate) fn time_attr(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A digest shortened for tables: `sha256:0123456789ab`.
/// A media type that wraps only after `/`, `.` and `+`
/// (`application/vnd.oci.image.manifest.v1+json`), never inside a word:
/// its pieces, escaped, with a `<wbr>` after each separator.
pub(crate) fn media_type(mt: &str) -> maud::Markup {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, c) in mt.char_indices() {
        if matches!(c, '/' | '.' | '+') {
            pieces.push(&mt[start..=i]);
            start = i + 1;
        }
    }
    pieces.push(&mt[start..]);
    maud::html! {
        code class="mt" {
            @for (i, piece) in pieces.iter().enumerate() {
                @if i > 0 { wbr; }
                (piece)
            }
        }
    }
}

pub(crate) fn short(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", &hex[..hex.len().min(12)]),
        None => digest.to_owned(),
    }
}
