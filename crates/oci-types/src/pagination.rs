//! The `n` and `last` query parameters of tag and catalog listings
//! (distribution-spec "Listing Tags").

use crate::error::{Error, clip};

/// Which page of a lexically sorted listing to return: at most `n` entries
/// strictly after `last`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pagination {
    /// Maximum number of entries; `None` means the server's default.
    pub n: Option<usize>,
    /// Return only entries lexically after this one.
    pub last: Option<String>,
}

impl Pagination {
    /// Parses the raw `n` and `last` parameter values.
    pub fn from_params(n: Option<&str>, last: Option<&str>) -> Result<Self, Error> {
        let n = match n {
            None => None,
            Some(v) => Some(
                v.parse::<usize>()
                    .map_err(|_| Error::InvalidPagination(format!("n={}", clip(v))))?,
            ),
        };
        Ok(Self {
            n,
            last: last.map(str::to_owned),
        })
    }

    /// Applies the page to an already sorted, de-duplicated list. Returns the
    /// page and whether entries remain after it.
    pub fn apply<T: AsRef<str>>(&self, sorted: Vec<T>, default_n: usize) -> (Vec<T>, bool) {
        let n = self.n.unwrap_or(default_n);
        let start = match &self.last {
            Some(last) => sorted.partition_point(|x| x.as_ref() <= last.as_str()),
            None => 0,
        };
        let mut rest = sorted;
        rest.drain(..start);
        // A zero-sized page never advertises a next page: following it would loop.
        let more = n > 0 && rest.len() > n;
        rest.truncate(n);
        (rest, more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        let all = vec!["a", "b", "c", "d"];
        let p = Pagination::from_params(Some("2"), None).unwrap();
        assert_eq!(p.apply(all.clone(), 100), (vec!["a", "b"], true));
        let p = Pagination::from_params(Some("2"), Some("b")).unwrap();
        assert_eq!(p.apply(all.clone(), 100), (vec!["c", "d"], false));
        let p = Pagination::from_params(None, Some("bb")).unwrap();
        assert_eq!(p.apply(all.clone(), 100), (vec!["c", "d"], false));
        let p = Pagination::from_params(Some("0"), None).unwrap();
        assert_eq!(p.apply(all, 100), (vec![], false));
        assert!(Pagination::from_params(Some("-1"), None).is_err());
        assert!(Pagination::from_params(Some("x"), None).is_err());
    }
}
