//! Small-object workload: a manifest to fetch, 10,000 tags and 10,000
//! repositories to page through.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use oci_types::{Digest, DigestAlgorithm, DigestHasher};

use super::blob::{expect, location, with_query};
use super::target::Target;
use crate::server::Error;

/// Requests in flight while seeding.
const SEED_CONCURRENCY: usize = 16;

/// The small image every manifest workload uses: an empty JSON config that
/// is also the one layer (the image-spec's "empty descriptor").
pub struct Image {
    /// The config/layer blob: `{}`.
    pub blob: Digest,
    /// The manifest body.
    pub manifest: Vec<u8>,
}

/// The OCI image manifest media type.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The `Accept` header clients send for manifests.
pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

impl Image {
    /// The image.
    pub fn new() -> Self {
        let mut h = DigestHasher::new(DigestAlgorithm::Sha256);
        h.update(b"{}");
        let blob = h.finalize();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_TYPE}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{blob}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{blob}","size":2}}],"annotations":{{"org.opencontainers.image.title":"oci-registry bench"}}}}"#
        );
        Self {
            blob,
            manifest: manifest.into_bytes(),
        }
    }

    /// Pushes the blob (POST then PUT `?digest=`) and the manifest as `tag`.
    pub async fn push(
        &self,
        client: &reqwest::Client,
        target: &Target,
        repo: &str,
        tag: &str,
    ) -> Result<(), Error> {
        let r = target
            .authorized(client.post(format!("{}/v2/{repo}/blobs/uploads/", target.base)))
            .send()
            .await?;
        let r = expect(r, 202, "POST upload").await?;
        let url = with_query(
            target,
            &location(&r, "POST upload")?,
            &format!("digest={}", self.blob),
        );
        let r = target
            .authorized(client.put(url))
            .header("content-type", "application/octet-stream")
            .body("{}")
            .send()
            .await?;
        expect(r, 201, "PUT blob").await?;
        self.tag(client, target, repo, tag).await
    }

    /// Puts the manifest under `tag` (its blob must be in `repo`).
    pub async fn tag(
        &self,
        client: &reqwest::Client,
        target: &Target,
        repo: &str,
        tag: &str,
    ) -> Result<(), Error> {
        let r = target
            .authorized(client.put(format!("{}/v2/{repo}/manifests/{tag}", target.base)))
            .header("content-type", MANIFEST_TYPE)
            .body(self.manifest.clone())
            .send()
            .await?;
        expect(r, 201, "PUT manifest").await.map(drop)
    }

    /// Mounts the blob from `from` into `repo`, then tags the manifest
    /// there: a new repository in two requests.
    async fn mount_and_tag(
        &self,
        client: &reqwest::Client,
        target: &Target,
        from: &str,
        repo: &str,
    ) -> Result<(), Error> {
        let r = client
            .post(format!(
                "{}/v2/{repo}/blobs/uploads/?mount={}&from={from}",
                target.base, self.blob
            ))
            .send()
            .await?;
        expect(r, 201, "POST mount").await?;
        self.tag(client, target, repo, "v1").await
    }
}

/// The name of tag `i` of the tags workload.
pub fn tag_name(i: usize) -> String {
    format!("t{i:05}")
}

/// The name of repository `i` of the catalog workload.
pub fn repo_name(i: usize) -> String {
    format!("bench-repos/r{i:05}")
}

/// Puts the image under `count` tags of `repo` (after pushing it once);
/// returns the time taken.
pub async fn seed_tags(
    client: &reqwest::Client,
    target: &Target,
    image: &Image,
    repo: &str,
    count: usize,
) -> Result<Duration, Error> {
    let started = Instant::now();
    image.push(client, target, repo, &tag_name(0)).await?;
    stream::iter(1..count)
        .map(|i| async move { image.tag(client, target, repo, &tag_name(i)).await })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    Ok(started.elapsed())
}

/// Creates `count` repositories, each by mounting the image's blob from
/// `from` and tagging the manifest; returns the time taken.
pub async fn seed_repos(
    client: &reqwest::Client,
    target: &Target,
    image: &Image,
    from: &str,
    count: usize,
) -> Result<Duration, Error> {
    let started = Instant::now();
    stream::iter(0..count)
        .map(|i| async move {
            image
                .mount_and_tag(client, target, from, &repo_name(i))
                .await
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    Ok(started.elapsed())
}

/// What paging through a list gave.
#[derive(Debug, Clone, Copy)]
pub struct Paged {
    /// Time from the first request to the last page.
    pub elapsed: Duration,
    /// Pages fetched.
    pub pages: usize,
    /// Entries seen in all pages.
    pub entries: usize,
}

/// Pages through a list endpoint (`/v2/<name>/tags/list` or `/v2/_catalog`)
/// the way clients do: first page with the server's default size, then
/// every `Link: <...>; rel="next"` until there is none; counts entries in
/// the JSON array `field`.
pub async fn page(
    client: &reqwest::Client,
    target: &Target,
    path: &str,
    field: &str,
) -> Result<Paged, Error> {
    let started = Instant::now();
    let mut url = format!("{}{path}", target.base);
    let mut pages = 0;
    let mut entries = 0;
    loop {
        let r = client.get(&url).send().await?;
        let r = expect(r, 200, "GET list").await?;
        let next = r
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(next_link);
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await?)?;
        let list = body
            .get(field)
            .and_then(|v| v.as_array())
            .ok_or_else(|| format!("GET {url}: no {field} array"))?;
        pages += 1;
        entries += list.len();
        match next {
            Some(next) if next.starts_with("http") => url = next,
            Some(next) => url = format!("{}{next}", target.base),
            None => break,
        }
    }
    Ok(Paged {
        elapsed: started.elapsed(),
        pages,
        entries,
    })
}

/// Times of [`one_page`]'s requests, of which it reports the median.
const ONE_PAGE_REQUESTS: usize = 21;

/// The median time (ms) of a GET of one page of 100 entries of a list
/// endpoint after `last` (from the start without one), over
/// [`ONE_PAGE_REQUESTS`] requests one after another; `None` when the
/// target does not page that list (it answers more than 100 entries to
/// `n=100`, as distribution 2.8 does for tags).
pub async fn one_page(
    client: &reqwest::Client,
    target: &Target,
    path: &str,
    last: Option<String>,
) -> Result<Option<f64>, Error> {
    let mut url = format!("{}{path}?n=100", target.base);
    if let Some(last) = &last {
        // Tag and repository names need no escaping in a query.
        url = format!("{url}&last={last}");
    }
    let mut times = Vec::with_capacity(ONE_PAGE_REQUESTS);
    for _ in 0..ONE_PAGE_REQUESTS {
        let started = Instant::now();
        let r = client.get(&url).send().await?;
        let r = expect(r, 200, "GET a page").await?;
        let body = r.bytes().await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        let body: serde_json::Value = serde_json::from_slice(&body)?;
        let entries = body
            .as_object()
            .and_then(|o| o.values().find_map(|v| v.as_array()))
            .map_or(0, Vec::len);
        if entries > 100 {
            return Ok(None);
        }
        if entries != 100 {
            return Err(format!("GET {url}: {entries} entries, not 100").into());
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(Some(times[times.len() / 2]))
}

/// The URL of a `Link` header's `rel="next"` entry (RFC 8288).
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|entry| {
        let (url, params) = entry.trim().split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        is_next.then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_are_found() {
        assert_eq!(
            next_link(r#"</v2/_catalog?last=a&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=a&n=2")
        );
        assert_eq!(
            next_link(r#"<http://h/x>; rel="prev", <http://h/y>; rel=next"#).as_deref(),
            Some("http://h/y")
        );
        assert_eq!(next_link(r#"</a>; rel="prev""#), None);
    }

    #[test]
    fn the_image_manifest_names_its_blob_as_config_and_layer() {
        let image = Image::new();
        let m: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(m["config"]["digest"], image.blob.to_string());
        assert_eq!(m["layers"][0]["digest"], image.blob.to_string());
        assert_eq!(
            image.blob.to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn names_sort_in_creation_order() {
        assert!(tag_name(9) < tag_name(10));
        assert!(repo_name(999) < repo_name(1000));
        assert_eq!(repo_name(3), "bench-repos/r00003");
    }
}
