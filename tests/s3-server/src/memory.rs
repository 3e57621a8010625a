//! [`MemoryS3`]: the S3 operations the registry (through `object_store`)
//! and everyday tools use, over objects kept in memory.
//!
//! Why not `s3s_fs::FileSystem`: it keeps each object's ETag and metadata in
//! a file named after the base64 of the whole key, so keys longer than about
//! 160 bytes fail with `500 InternalError` (`ENAMETOOLONG`); the registry's
//! keys for sha512 digests and for referrers are longer than that (S3 allows
//! 1024 bytes). It also decides `If-None-Match` / `If-Match` by checking and
//! then writing, which is not atomic under concurrency.
//!
//! Here every operation that decides and writes (conditional `PutObject` and
//! `CompleteMultipartUpload`, copies, deletes) does both under one lock, so
//! conditional writes are atomic as on AWS S3. Request bodies are read whole
//! before the lock is taken.
//!
//! Implemented: buckets (create, head, list, delete, location); objects
//! (put, get with `Range` / `If-Match` / `If-None-Match`, head, delete,
//! batch delete, copy with `x-amz-copy-source-if-*`, `ListObjectsV2` with
//! prefix, delimiter, `start-after`, `max-keys` and continuation); multipart
//! uploads (create, upload part, upload part copy, list parts, complete with
//! `If-None-Match` / `If-Match`, abort), with AWS's 5 MiB minimum for every
//! part but the last. Everything else answers `501 NotImplemented`.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use md5::{Digest as _, Md5};
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

/// AWS's minimum size of every part of a multipart upload but the last.
const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// An in-memory S3 service. See the module documentation. Clones share
/// the objects.
#[derive(Debug, Default, Clone)]
pub struct MemoryS3 {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    buckets: BTreeMap<String, Bucket>,
    uploads: HashMap<String, Upload>,
    /// `GetObject`s served, per `<bucket>/<key>` (one entry per object
    /// read, so bounded by the objects ever stored).
    gets: HashMap<String, ObjectGets>,
}

/// How an object was read: the `GetObject`s served for it, by how each
/// was authenticated (see [`crate::S3Server::gets`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ObjectGets {
    /// Signed with an `Authorization` header: a client holding the
    /// credentials (the registry).
    pub signed: u64,
    /// Through a presigned URL (`X-Amz-Signature` in the query): a client
    /// the credential holder handed a URL to.
    pub presigned: u64,
}

#[derive(Debug)]
struct Bucket {
    created: SystemTime,
    objects: BTreeMap<String, Object>,
}

/// An object's (or a part's) bytes: the buffers it was received as, one
/// per part for a completed multipart upload, never joined into one (so
/// completing an upload copies nothing, as on S3 where it is a metadata
/// operation).
#[derive(Debug, Clone, Default)]
struct Data {
    segments: Vec<Bytes>,
    len: usize,
}

impl Data {
    fn len(&self) -> usize {
        self.len
    }

    fn append(&mut self, other: &Data) {
        self.segments.extend(other.segments.iter().cloned());
        self.len += other.len;
    }

    /// The bytes in `range` (which must lie within the data).
    fn slice(&self, range: std::ops::Range<usize>) -> Data {
        let mut out = Data::default();
        let mut start = 0;
        for segment in &self.segments {
            let end = start + segment.len();
            if end > range.start && start < range.end {
                let from = range.start.max(start) - start;
                let to = range.end.min(end) - start;
                out.append(&Data::from(segment.slice(from..to)));
            }
            start = end;
        }
        out
    }

    /// A response body streaming the segments as they are.
    fn into_body(self) -> StreamingBlob {
        match <[Bytes; 1]>::try_from(self.segments) {
            Ok([one]) => StreamingBlob::from(s3s::Body::from(one)),
            Err(segments) => StreamingBlob::wrap(futures::stream::iter(
                segments.into_iter().map(Ok::<_, std::io::Error>),
            )),
        }
    }

    /// MD5 of the bytes, hex.
    fn md5_hex(&self) -> String {
        let mut md5 = Md5::new();
        for segment in &self.segments {
            md5.update(segment);
        }
        hex::encode(md5.finalize())
    }
}

impl From<Bytes> for Data {
    fn from(bytes: Bytes) -> Self {
        let len = bytes.len();
        let segments = if bytes.is_empty() {
            Vec::new()
        } else {
            vec![bytes]
        };
        Self { segments, len }
    }
}

#[derive(Debug, Clone)]
struct Object {
    data: Data,
    /// Without quotes.
    e_tag: String,
    last_modified: SystemTime,
    content_type: Option<ContentType>,
    metadata: Option<Metadata>,
}

impl Object {
    fn new(data: Data, e_tag: String, attrs: Attrs) -> Self {
        Self {
            data,
            e_tag,
            last_modified: SystemTime::now(),
            content_type: attrs.content_type,
            metadata: attrs.metadata,
        }
    }

    fn e_tag(&self) -> ETag {
        ETag::Strong(self.e_tag.clone())
    }

    fn size(&self) -> i64 {
        self.data.len() as i64
    }
}

/// What a client may attach to an object.
#[derive(Debug, Clone, Default)]
struct Attrs {
    content_type: Option<ContentType>,
    metadata: Option<Metadata>,
}

#[derive(Debug)]
struct Upload {
    bucket: String,
    key: String,
    attrs: Attrs,
    parts: BTreeMap<i32, Part>,
}

/// An uploaded part. Its ETag is a CRC-64/NVME of its bytes, not their
/// MD5 as on AWS: an ETag is opaque to clients ("may or may not be an MD5
/// digest of the object data", S3 API reference, `ETag`), and MD5 would
/// make this server, not the client under test, the cost of an upload
/// (it hashes at about 0.6 GB/s a core; the CRC at several GB/s).
#[derive(Debug)]
struct Part {
    data: Data,
    crc: u64,
    last_modified: SystemTime,
}

impl Part {
    fn new(data: Data) -> Self {
        let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme);
        for segment in &data.segments {
            crc.update(segment);
        }
        Self {
            crc: crc.finalize(),
            data,
            last_modified: SystemTime::now(),
        }
    }

    fn e_tag(&self) -> String {
        format!("{:016x}", self.crc)
    }
}

impl MemoryS3 {
    /// An empty service with the given buckets.
    pub fn with_buckets<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let s = Self::default();
        {
            let mut state = s.lock();
            for name in names {
                state.buckets.insert(name.to_owned(), Bucket::new());
            }
        }
        s
    }

    /// Removes an object directly (not through the S3 protocol); returns
    /// whether it existed.
    pub fn remove_object(&self, bucket: &str, key: &str) -> bool {
        self.lock()
            .buckets
            .get_mut(bucket)
            .is_some_and(|b| b.objects.remove(key).is_some())
    }

    /// Writes an object directly (not through the S3 protocol), e.g. to
    /// corrupt a stored blob in a test; returns whether the bucket exists.
    pub fn put_object_bytes(&self, bucket: &str, key: &str, data: Bytes) -> bool {
        let data = Data::from(data);
        let e_tag = data.md5_hex();
        let attrs = Attrs {
            content_type: None,
            metadata: None,
        };
        let mut state = self.lock();
        match state.buckets.get_mut(bucket) {
            Some(b) => {
                b.objects
                    .insert(key.to_owned(), Object::new(data, e_tag, attrs));
                true
            }
            None => false,
        }
    }

    /// Multipart uploads created and neither completed nor aborted.
    pub fn open_multipart_uploads(&self) -> usize {
        self.lock().uploads.len()
    }

    /// Keys of the bucket's objects that start with `prefix`.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.lock().buckets.get(bucket).map_or_else(Vec::new, |b| {
            b.objects
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect()
        })
    }

    /// The `GetObject`s served for `key` of `bucket`.
    pub fn gets(&self, bucket: &str, key: &str) -> ObjectGets {
        self.lock()
            .gets
            .get(&format!("{bucket}/{key}"))
            .copied()
            .unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Bucket {
    fn new() -> Self {
        Self {
            created: SystemTime::now(),
            objects: BTreeMap::new(),
        }
    }
}

impl State {
    fn bucket(&self, name: &str) -> S3Result<&Bucket> {
        self.buckets
            .get(name)
            .ok_or_else(|| s3_error!(NoSuchBucket))
    }

    fn bucket_mut(&mut self, name: &str) -> S3Result<&mut Bucket> {
        self.buckets
            .get_mut(name)
            .ok_or_else(|| s3_error!(NoSuchBucket))
    }

    fn object(&self, bucket: &str, key: &str) -> S3Result<&Object> {
        self.bucket(bucket)?
            .objects
            .get(key)
            .ok_or_else(|| s3_error!(NoSuchKey))
    }

    fn upload_mut(&mut self, id: &str, bucket: &str, key: &str) -> S3Result<&mut Upload> {
        match self.uploads.get_mut(id) {
            Some(u) if u.bucket == bucket && u.key == key => Ok(u),
            _ => Err(s3_error!(NoSuchUpload)),
        }
    }
}

/// Reads a request body whole, into one buffer allocated once at its
/// declared length.
async fn read_body(body: Option<StreamingBlob>, len: Option<i64>) -> S3Result<Data> {
    let Some(body) = body else {
        return Ok(Data::default());
    };
    let capacity = len.and_then(|l| usize::try_from(l).ok()).unwrap_or(0);
    let buf = body
        .try_fold(
            BytesMut::with_capacity(capacity),
            |mut buf, chunk| async move {
                buf.extend_from_slice(&chunk);
                Ok(buf)
            },
        )
        .await
        .map_err(|e| s3_error!(IncompleteBody, "reading the body: {e}"))?;
    Ok(Data::from(buf.freeze()))
}

/// Checks `If-None-Match` and `If-Match` of a write against the object it
/// would replace.
fn check_write_conditions(
    current: Option<&Object>,
    if_none_match: Option<&ETagCondition>,
    if_match: Option<&ETagCondition>,
) -> S3Result<()> {
    if let Some(cond) = if_none_match {
        let clash = match (cond, current) {
            (_, None) => false,
            (ETagCondition::ETag(want), Some(obj)) => want.weak_cmp(&obj.e_tag()),
            (_, Some(_)) => true, // `*`
        };
        if clash {
            return Err(s3_error!(PreconditionFailed, "Object already exists"));
        }
    }
    if let Some(cond) = if_match {
        match (cond, current) {
            (_, None) => {
                return Err(s3_error!(PreconditionFailed, "Object does not exist"));
            }
            (ETagCondition::ETag(want), Some(obj)) if !want.strong_cmp(&obj.e_tag()) => {
                return Err(s3_error!(PreconditionFailed, "ETag does not match"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks `If-Match` / `If-None-Match` of a read (or a copy's source).
fn check_read_conditions(
    obj: &Object,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    not_modified: impl FnOnce() -> s3s::S3Error,
) -> S3Result<()> {
    if let Some(ETagCondition::ETag(want)) = if_match
        && !want.strong_cmp(&obj.e_tag())
    {
        return Err(s3_error!(PreconditionFailed));
    }
    if let Some(cond) = if_none_match {
        let matches = match cond {
            ETagCondition::ETag(want) => want.weak_cmp(&obj.e_tag()),
            _ => true,
        };
        if matches {
            return Err(not_modified());
        }
    }
    Ok(())
}

/// `bucket`, `key` of a copy source.
fn copy_source(src: &CopySource) -> S3Result<(&str, &str)> {
    match src {
        CopySource::Bucket { bucket, key, .. } => Ok((bucket, key)),
        _ => Err(s3_error!(NotImplemented, "only bucket copy sources")),
    }
}

/// Parses `bytes=first-last` (inclusive) against an object of `len` bytes.
fn copy_range(range: &str, len: usize) -> S3Result<std::ops::Range<usize>> {
    let bad = || s3_error!(InvalidArgument, "bad x-amz-copy-source-range {range:?}");
    let (first, last) = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let first: usize = first.parse().map_err(|_| bad())?;
    let last: usize = last.parse().map_err(|_| bad())?;
    if first > last || last >= len {
        return Err(s3_error!(InvalidRange));
    }
    Ok(first..last + 1)
}

#[async_trait::async_trait]
impl S3 for MemoryS3 {
    // -- buckets ------------------------------------------------------------

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let mut state = self.lock();
        if state.buckets.contains_key(&req.input.bucket) {
            return Err(s3_error!(BucketAlreadyOwnedByYou));
        }
        state.buckets.insert(req.input.bucket, Bucket::new());
        Ok(S3Response::new(CreateBucketOutput::default()))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.lock().bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.lock().bucket(&req.input.bucket)?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let state = self.lock();
        let buckets = state
            .buckets
            .iter()
            .map(|(name, b)| s3s::dto::Bucket {
                name: Some(name.clone()),
                creation_date: Some(b.created.into()),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            ..Default::default()
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let mut state = self.lock();
        if !state.bucket(&req.input.bucket)?.objects.is_empty() {
            return Err(s3_error!(BucketNotEmpty));
        }
        state.buckets.remove(&req.input.bucket);
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    // -- objects ------------------------------------------------------------

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        self.lock().bucket(&input.bucket)?;
        let data = read_body(input.body, input.content_length).await?;
        let e_tag = data.md5_hex();
        let attrs = Attrs {
            content_type: input.content_type,
            metadata: input.metadata,
        };
        let mut state = self.lock();
        let bucket = state.bucket_mut(&input.bucket)?;
        check_write_conditions(
            bucket.objects.get(&input.key),
            input.if_none_match.as_ref(),
            input.if_match.as_ref(),
        )?;
        bucket
            .objects
            .insert(input.key, Object::new(data, e_tag.clone(), attrs));
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(e_tag)),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let presigned = req
            .uri
            .query()
            .is_some_and(|q| q.contains("X-Amz-Signature="));
        let input = req.input;
        let obj = {
            let mut state = self.lock();
            let obj = state.object(&input.bucket, &input.key)?.clone();
            let gets = state
                .gets
                .entry(format!("{}/{}", input.bucket, input.key))
                .or_default();
            if presigned {
                gets.presigned += 1;
            } else {
                gets.signed += 1;
            }
            obj
        };
        check_read_conditions(
            &obj,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            || s3_error!(NotModified),
        )?;
        let len = obj.data.len() as u64;
        let (data, content_range) = match input.range {
            None => (obj.data.clone(), None),
            Some(range) => {
                let r = range.check(len)?;
                let content_range = format!("bytes {}-{}/{len}", r.start, r.end - 1);
                (
                    obj.data.slice(r.start as usize..r.end as usize),
                    Some(content_range),
                )
            }
        };
        Ok(S3Response::new(GetObjectOutput {
            content_length: Some(data.len() as i64),
            body: Some(data.into_body()),
            content_range,
            accept_ranges: Some("bytes".to_owned()),
            e_tag: Some(obj.e_tag()),
            last_modified: Some(obj.last_modified.into()),
            content_type: obj.content_type.clone(),
            metadata: obj.metadata.clone(),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let obj = self.lock().object(&input.bucket, &input.key)?.clone();
        check_read_conditions(
            &obj,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            || s3_error!(NotModified),
        )?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(obj.size()),
            accept_ranges: Some("bytes".to_owned()),
            e_tag: Some(obj.e_tag()),
            last_modified: Some(obj.last_modified.into()),
            content_type: obj.content_type.clone(),
            metadata: obj.metadata.clone(),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let mut state = self.lock();
        state
            .bucket_mut(&req.input.bucket)?
            .objects
            .remove(&req.input.key);
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let mut state = self.lock();
        let bucket = state.bucket_mut(&input.bucket)?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        for id in input.delete.objects {
            bucket.objects.remove(&id.key);
            if !quiet {
                deleted.push(DeletedObject {
                    key: Some(id.key),
                    ..Default::default()
                });
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        let mut state = self.lock();
        let src = state.object(src_bucket, src_key)?.clone();
        check_read_conditions(
            &src,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            || s3_error!(PreconditionFailed),
        )?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let attrs = if replace {
            Attrs {
                content_type: input.content_type,
                metadata: input.metadata,
            }
        } else {
            Attrs {
                content_type: src.content_type,
                metadata: src.metadata,
            }
        };
        let obj = Object::new(src.data, src.e_tag, attrs);
        let result = CopyObjectResult {
            e_tag: Some(obj.e_tag()),
            last_modified: Some(obj.last_modified.into()),
            ..Default::default()
        };
        state
            .bucket_mut(&input.bucket)?
            .objects
            .insert(input.key, obj);
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(result),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let state = self.lock();
        let bucket = state.bucket(&input.bucket)?;
        let prefix = input.prefix.as_deref().unwrap_or("");
        let delimiter = input.delimiter.as_deref().filter(|d| !d.is_empty());
        let max_keys = usize::try_from(input.max_keys.unwrap_or(1000).clamp(0, 1000)).unwrap_or(0);

        // Resume after the later of the continuation token (the last key or
        // common prefix returned) and `start-after`.
        let marker = match (
            input.continuation_token.as_deref(),
            input.start_after.as_deref(),
        ) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        // A token holding the delimiter past the prefix was a common prefix:
        // every key under it was already reported.
        let skip_under = input.continuation_token.as_deref().filter(|t| {
            delimiter.is_some_and(|d| t.strip_prefix(prefix).is_some_and(|rest| rest.contains(d)))
        });
        let start = match marker {
            Some(m) if m >= prefix => Bound::Excluded(m.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };

        let mut contents = Vec::new();
        let mut common_prefixes: Vec<String> = Vec::new();
        let mut last = None;
        let mut truncated = false;
        for (key, obj) in bucket.objects.range((start, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            if skip_under.is_some_and(|s| key.starts_with(s)) {
                continue;
            }
            let group = delimiter.and_then(|d| {
                key[prefix.len()..]
                    .find(d)
                    .map(|i| &key[..prefix.len() + i + d.len()])
            });
            if let Some(group) = group
                && common_prefixes.last().map(String::as_str) == Some(group)
            {
                continue;
            }
            if contents.len() + common_prefixes.len() == max_keys {
                truncated = true;
                break;
            }
            match group {
                Some(group) => {
                    common_prefixes.push(group.to_owned());
                    last = Some(group.to_owned());
                }
                None => {
                    contents.push(s3s::dto::Object {
                        key: Some(key.clone()),
                        size: Some(obj.size()),
                        e_tag: Some(obj.e_tag()),
                        last_modified: Some(obj.last_modified.into()),
                        ..Default::default()
                    });
                    last = Some(key.clone());
                }
            }
        }
        let key_count = (contents.len() + common_prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            start_after: input.start_after,
            encoding_type: input.encoding_type,
            max_keys: Some(max_keys as i32),
            key_count: Some(key_count),
            is_truncated: Some(truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: if truncated { last } else { None },
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!common_prefixes.is_empty()).then(|| {
                common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect()
            }),
            ..Default::default()
        }))
    }

    // -- multipart uploads --------------------------------------------------

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let mut state = self.lock();
        state.bucket(&input.bucket)?;
        let id = uuid::Uuid::new_v4().to_string();
        state.uploads.insert(
            id.clone(),
            Upload {
                bucket: input.bucket.clone(),
                key: input.key.clone(),
                attrs: Attrs {
                    content_type: input.content_type,
                    metadata: input.metadata,
                },
                parts: BTreeMap::new(),
            },
        );
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        if !(1..=10_000).contains(&input.part_number) {
            return Err(s3_error!(InvalidArgument, "part number out of range"));
        }
        self.lock()
            .upload_mut(&input.upload_id, &input.bucket, &input.key)?;
        let part = Part::new(read_body(input.body, input.content_length).await?);
        let e_tag = part.e_tag();
        self.lock()
            .upload_mut(&input.upload_id, &input.bucket, &input.key)?
            .parts
            .insert(input.part_number, part);
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(e_tag)),
            ..Default::default()
        }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        if !(1..=10_000).contains(&input.part_number) {
            return Err(s3_error!(InvalidArgument, "part number out of range"));
        }
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        let mut state = self.lock();
        let src = state.object(src_bucket, src_key)?.clone();
        check_read_conditions(
            &src,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            || s3_error!(PreconditionFailed),
        )?;
        let data = match &input.copy_source_range {
            Some(r) => src.data.slice(copy_range(r, src.data.len())?),
            None => src.data,
        };
        let part = Part::new(data);
        let result = CopyPartResult {
            e_tag: Some(ETag::Strong(part.e_tag())),
            last_modified: Some(part.last_modified.into()),
            ..Default::default()
        };
        state
            .upload_mut(&input.upload_id, &input.bucket, &input.key)?
            .parts
            .insert(input.part_number, part);
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(result),
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let mut state = self.lock();
        let upload = state.upload_mut(&input.upload_id, &input.bucket, &input.key)?;
        let parts = upload
            .parts
            .iter()
            .map(|(n, p)| s3s::dto::Part {
                part_number: Some(*n),
                size: Some(p.data.len() as i64),
                e_tag: Some(ETag::Strong(p.e_tag())),
                last_modified: Some(p.last_modified.into()),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            parts: Some(parts),
            is_truncated: Some(false),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let wanted = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if wanted.is_empty() {
            return Err(s3_error!(
                InvalidRequest,
                "You must specify at least one part"
            ));
        }
        let mut state = self.lock();
        let upload = state.upload_mut(&input.upload_id, &input.bucket, &input.key)?;
        let mut data = Data::default();
        let mut md5s = Md5::new();
        let mut previous = 0;
        for (i, want) in wanted.iter().enumerate() {
            let number = want
                .part_number
                .ok_or_else(|| s3_error!(InvalidPart, "missing part number"))?;
            if number <= previous {
                return Err(s3_error!(InvalidPartOrder));
            }
            previous = number;
            let part = upload
                .parts
                .get(&number)
                .ok_or_else(|| s3_error!(InvalidPart, "no part {number}"))?;
            if let Some(e_tag) = &want.e_tag
                && e_tag.value().trim_matches('"') != part.e_tag()
            {
                return Err(s3_error!(InvalidPart, "ETag of part {number} differs"));
            }
            if i + 1 < wanted.len() && part.data.len() < MIN_PART_SIZE {
                return Err(s3_error!(EntityTooSmall));
            }
            data.append(&part.data);
            md5s.update(part.crc.to_be_bytes());
        }
        let e_tag = format!("{}-{}", hex::encode(md5s.finalize()), wanted.len());
        let attrs = upload.attrs.clone();
        let bucket = state.bucket_mut(&input.bucket)?;
        check_write_conditions(
            bucket.objects.get(&input.key),
            input.if_none_match.as_ref(),
            input.if_match.as_ref(),
        )?;
        bucket
            .objects
            .insert(input.key.clone(), Object::new(data, e_tag.clone(), attrs));
        state.uploads.remove(&input.upload_id);
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(e_tag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let mut state = self.lock();
        state.upload_mut(&input.upload_id, &input.bucket, &input.key)?;
        state.uploads.remove(&input.upload_id);
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}
