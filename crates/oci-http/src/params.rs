//! Query-string parameters.

use oci_types::Pagination;

use crate::error::ApiError;

/// The decoded query string of a request.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes `query` (`a=1&b=2`, percent- and `+`-encoded).
    pub fn parse(query: Option<&str>) -> Self {
        Self(
            query
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .into_owned()
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    /// The first value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `n` and `last` for listings.
    pub fn pagination(&self) -> Result<Pagination, ApiError> {
        Ok(Pagination::from_params(self.get("n"), self.get("last"))?)
    }
}
