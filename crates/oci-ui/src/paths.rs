//! The UI's URLs, built in one place. Repository names, tags and digests
//! are validated types whose characters need no escaping in a path; query
//! values are form-encoded.
//!
//! `<base>r/<name>` is a repository and `<base>r/<name>/-/<what>/...` its
//! manifests, blobs and delete form: `-` cannot start a name component,
//! so the split is unambiguous.

use oci_types::{Digest, RepositoryName};

/// Query string `?k=v&...` of `pairs`, encoded (empty for none).
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    format!("?{}", q.finish())
}

/// A repository's page.
pub(crate) fn repo(base: &str, name: &RepositoryName) -> String {
    format!("{base}r/{name}")
}

/// A manifest's page (`reference`: a tag or a digest).
pub(crate) fn manifest(base: &str, name: &RepositoryName, reference: &str) -> String {
    format!("{base}r/{name}/-/manifest/{reference}")
}

/// A blob's page.
pub(crate) fn blob(base: &str, name: &RepositoryName, digest: &Digest) -> String {
    format!("{base}r/{name}/-/blob/{digest}")
}

/// The delete form of a tag or manifest.
pub(crate) fn delete(base: &str, name: &RepositoryName, reference: &str) -> String {
    format!("{base}r/{name}/-/delete{}", query(&[("ref", reference)]))
}
