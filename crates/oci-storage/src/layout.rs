//! Where every object lives. The single source of truth for paths: nothing
//! else in the crate builds a [`Path`] by hand.
//!
//! See the crate documentation for the layout as a picture.

use object_store::path::Path;
use oci_types::{Digest, RepositoryName, Tag};
use uuid::Uuid;

/// `blobs/<alg>/<hex[..2]>/<hex>/data`: content shared by all repositories.
pub(crate) fn blob_data(digest: &Digest) -> Path {
    let hex = digest.hex();
    key(format!(
        "blobs/{}/{}/{}/data",
        digest.algorithm(),
        &hex[..2],
        hex
    ))
}

/// `blobs/`: every blob's data.
pub(crate) fn blobs_dir() -> Path {
    Path::from("blobs")
}

/// The digest of a `blobs/<alg>/<hex[..2]>/<hex>/data` key, if it is one.
pub(crate) fn blob_data_digest(key: &Path) -> Option<Digest> {
    let parts: Vec<&str> = key.as_ref().split('/').collect();
    match parts.as_slice() {
        ["blobs", alg, _, hex, "data"] => format!("{alg}:{hex}").parse().ok(),
        _ => None,
    }
}

/// `repositories/<name>/_layers/`: the blobs the repository holds.
pub(crate) fn blob_links_dir(name: &RepositoryName) -> Path {
    key(format!("{}/_layers", repo(name)))
}

/// The digest of a `.../_layers/<alg>/<hex>` or `.../_manifests/<alg>/<hex>`
/// link key under `dir_name`, if it is one.
pub(crate) fn link_digest(key: &Path, dir_name: &str) -> Option<Digest> {
    let mut parts = key.as_ref().rsplit('/');
    let hex = parts.next()?;
    let alg = parts.next()?;
    (parts.next()? == dir_name)
        .then(|| format!("{alg}:{hex}").parse().ok())
        .flatten()
}

/// `repositories/<name>/_manifests/`: the manifests the repository holds.
pub(crate) fn manifests_dir(name: &RepositoryName) -> Path {
    key(format!("{}/_manifests", repo(name)))
}

/// The key `text` names. Keys here are built from repository names, tags,
/// digests and fixed words, which hold no character object_store
/// percent-encodes: such a key is validated and taken as it is (one
/// copy) instead of being re-encoded segment by segment (`Path::from`
/// cost a manifest GET ~10 % of its instructions under callgrind).
/// Anything else goes through `Path::from`, so the key is the same either
/// way.
fn key(text: String) -> Path {
    let plain = text.bytes().all(|b| PLAIN[usize::from(b)]);
    match plain.then(|| Path::parse(&text)) {
        Some(Ok(path)) => path,
        _ => Path::from(text),
    }
}

/// The bytes of names, tags and digests that `Path::from` keeps as they
/// are: ASCII letters and digits, `/ . _ - + = :`.
const PLAIN: [bool; 256] = {
    let mut plain = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        plain[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'/' | b'.' | b'_' | b'-' | b'+' | b'=' | b':');
        b += 1;
    }
    plain
};

fn repo(name: &RepositoryName) -> String {
    format!("repositories/{name}")
}

/// `repositories/<name>/_layers/<alg>/<hex>`: the repository holds the blob.
pub(crate) fn blob_link(name: &RepositoryName, digest: &Digest) -> Path {
    key(format!(
        "{}/_layers/{}/{}",
        repo(name),
        digest.algorithm(),
        digest.hex()
    ))
}

/// `repositories/<name>/_manifests/<alg>/<hex>`: the repository holds the
/// manifest; the object holds its [`crate::manifests::ManifestLink`].
pub(crate) fn manifest_link(name: &RepositoryName, digest: &Digest) -> Path {
    key(format!(
        "{}/_manifests/{}/{}",
        repo(name),
        digest.algorithm(),
        digest.hex()
    ))
}

/// `repositories/<name>/_tags/`: one object per tag.
pub(crate) fn tags_dir(name: &RepositoryName) -> Path {
    key(format!("{}/_tags", repo(name)))
}

/// `repositories/<name>/_tags/<tag>`: holds the tagged digest as text.
pub(crate) fn tag(name: &RepositoryName, tag: &Tag) -> Path {
    key(format!("{}/_tags/{tag}", repo(name)))
}

/// `repositories/<name>/_tagged/<alg>/<hex>/`: the reverse tag index of one
/// digest, one object per tag that was pointed at it.
pub(crate) fn tag_index_dir(name: &RepositoryName, digest: &Digest) -> Path {
    key(format!(
        "{}/_tagged/{}/{}",
        repo(name),
        digest.algorithm(),
        digest.hex()
    ))
}

/// `repositories/<name>/_tagged/<alg>/<hex>/<tag>`: `tag` may point to the
/// digest (written before the tag; holds the digest as text).
pub(crate) fn tag_index_entry(name: &RepositoryName, digest: &Digest, tag: &Tag) -> Path {
    tag_index_dir(name, digest).join(tag.as_str())
}

/// `repositories/<name>/_tagged/`: the whole reverse tag index.
pub(crate) fn tag_index_root(name: &RepositoryName) -> Path {
    key(format!("{}/_tagged", repo(name)))
}

/// `repositories/<name>/_tagged/_complete`: every tag of the repository has
/// its index entry (absent in stores written before the index existed).
pub(crate) fn tag_index_complete(name: &RepositoryName) -> Path {
    key(format!("{}/_tagged/_complete", repo(name)))
}

/// `repositories/<name>/_referrers/<alg>/<subject hex>/`: one object per
/// manifest whose `subject` is that digest.
pub(crate) fn referrers_dir(name: &RepositoryName, subject: &Digest) -> Path {
    key(format!(
        "{}/_referrers/{}/{}",
        repo(name),
        subject.algorithm(),
        subject.hex()
    ))
}

/// `.../_referrers/<alg>/<subject hex>/<alg>-<referrer hex>`: the
/// referrer's descriptor as JSON.
pub(crate) fn referrer(name: &RepositoryName, subject: &Digest, referrer: &Digest) -> Path {
    referrers_dir(name, subject).join(format!("{}-{}", referrer.algorithm(), referrer.hex()))
}

/// `_catalog/`: one marker per repository.
pub(crate) fn catalog_dir() -> Path {
    Path::from("_catalog")
}

/// File name of the catalog marker object.
pub(crate) const CATALOG_MARKER: &str = "_repository";

/// `_catalog/<name>/_repository`: the repository exists.
pub(crate) fn catalog_marker(name: &RepositoryName) -> Path {
    key(format!("_catalog/{name}/{CATALOG_MARKER}"))
}

/// `_usage/latest.json`: the last recorded storage usage.
pub(crate) fn usage_record() -> Path {
    Path::from("_usage/latest.json")
}

/// `_keys/<file name>`: a key shared by every replica.
pub(crate) fn shared_key(file_name: &str) -> Path {
    key(format!("_keys/{file_name}"))
}

/// `_gc/lock`: the collector's lock (an `flock`ed file, or a lease object
/// on S3): at most one collection at a time across replicas.
pub(crate) fn gc_lock() -> Path {
    Path::from("_gc/lock")
}

/// `_gc/state`: the collector's [`crate::gc::GcState`] (JSON), which
/// manifest pushes read.
pub(crate) fn gc_state() -> Path {
    Path::from("_gc/state")
}

/// `_gc/runs/`: the records of collections in progress.
pub(crate) fn gc_runs() -> Path {
    Path::from("_gc/runs")
}

fn gc_run(generation: u64) -> Path {
    gc_runs().join(format!("{generation:020}"))
}

/// `_gc/runs/<generation>/journal/`: references of manifests pushed while
/// the run marks.
pub(crate) fn gc_journal(generation: u64) -> Path {
    gc_run(generation).join("journal")
}

/// `_gc/runs/<generation>/journal/<uuid>`: one pushed manifest's
/// references, one digest per line.
pub(crate) fn gc_journal_entry(generation: u64, id: &Uuid) -> Path {
    gc_journal(generation).join(id.to_string())
}

/// `_gc/runs/<generation>/candidates/<alg>-<hex[..2]>`: the run's sweep
/// candidates whose digest falls in that shard, one per line.
pub(crate) fn gc_candidates(generation: u64, digest: &Digest) -> Path {
    gc_run(generation).join("candidates").join(format!(
        "{}-{}",
        digest.algorithm(),
        &digest.hex()[..2]
    ))
}

/// `_uploads/`: every upload session.
pub(crate) fn uploads_dir() -> Path {
    Path::from("_uploads")
}

/// `_sweeps/uploads/slots/`: one marker per sweep slot won by a replica.
pub(crate) fn sweep_slots() -> Path {
    Path::from("_sweeps/uploads/slots")
}

/// `_sweeps/uploads/slots/<slot, 20 digits>`: the replica that created it
/// sweeps upload sessions in that slot.
pub(crate) fn sweep_slot(slot: u128) -> Path {
    sweep_slots().join(format!("{slot:020}"))
}

/// `_sweeps/uploads/count`: open sessions the last sweep counted (text).
pub(crate) fn sweep_count() -> Path {
    Path::from("_sweeps/uploads/count")
}

/// `_uploads/<uuid>/`: everything of one upload session.
pub(crate) fn upload_dir(id: &Uuid) -> Path {
    key(format!("_uploads/{id}"))
}

/// `_uploads/<uuid>/state.json`: the session's [`crate::uploads::UploadState`].
pub(crate) fn upload_state(id: &Uuid) -> Path {
    upload_dir(id).join("state.json")
}

/// `_uploads/<uuid>/data`: received bytes (filesystem upload area).
pub(crate) fn upload_data(id: &Uuid) -> Path {
    upload_dir(id).join("data")
}

/// `_uploads/<uuid>/lock`: the session's lease (shared-store backends).
pub(crate) fn upload_lock(id: &Uuid) -> Path {
    upload_dir(id).join("lock")
}

/// `_uploads/<uuid>/blob`: the S3 multipart upload's target.
pub(crate) fn upload_multipart_target(id: &Uuid) -> Path {
    upload_dir(id).join("blob")
}

/// `_uploads/<uuid>/tail-<nonce>`: bytes short of a full part (S3).
pub(crate) fn upload_tail(id: &Uuid, nonce: &Uuid) -> Path {
    upload_dir(id).join(format!("tail-{nonce}"))
}

/// `_uploads/<uuid>/parts/<offset, 20 digits>`: one received chunk (generic
/// upload area).
pub(crate) fn upload_part(id: &Uuid, offset: u64) -> Path {
    upload_dir(id).join("parts").join(format!("{offset:020}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_equal_what_path_from_makes_of_them() {
        for text in [
            "repositories/a/b/_tags/v1.0-rc_1",
            "blobs/sha256+b64u/ab/AB=_-/data",
            "/leading/and/trailing/",
            "empty//segment",
            "dot/./segments/..",
            "needs/encoding/%25/a b/x#y/[z]",
            "",
        ] {
            assert_eq!(key(text.to_string()), Path::from(text), "{text:?}");
        }
    }

    #[test]
    fn paths_are_stable() {
        let d = Digest::of(b"");
        let name: RepositoryName = "a/b".parse().unwrap();
        assert_eq!(
            blob_data(&d).as_ref(),
            format!("blobs/sha256/e3/{}/data", d.hex())
        );
        assert_eq!(
            blob_link(&name, &d).as_ref(),
            format!("repositories/a/b/_layers/sha256/{}", d.hex())
        );
        let t: Tag = "v1".parse().unwrap();
        assert_eq!(
            tag_index_entry(&name, &d, &t).as_ref(),
            format!("repositories/a/b/_tagged/sha256/{}/v1", d.hex())
        );
        assert_eq!(
            tag_index_complete(&name).as_ref(),
            "repositories/a/b/_tagged/_complete"
        );
        let marker = catalog_marker(&name);
        assert_eq!(marker.as_ref(), "_catalog/a/b/_repository");
        assert_eq!(
            gc_candidates(7, &d).as_ref(),
            "_gc/runs/00000000000000000007/candidates/sha256-e3"
        );
        assert_eq!(
            upload_part(&Uuid::nil(), 5).as_ref(),
            "_uploads/00000000-0000-0000-0000-000000000000/parts/00000000000000000005"
        );
    }
}
