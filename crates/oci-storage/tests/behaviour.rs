//! Behaviour suite of the storage engine, run against every backend.
//!
//! Each test below is written once (in `behaviour/<module>.rs`, taking a fresh
//! [`common::Fixture`]) and generated once per backend, named
//! `<backend>::<module>::<test>`: `cargo test -p oci-storage --test behaviour
//! memory::` runs one backend. The backend list is `for_each_backend!` in
//! `common/mod.rs`. Azure runs a part of the suite (at the end); GCS, on
//! an emulator that implements no write, runs none of it, only reads of a
//! store copied into the emulator (`behaviour/gcs.rs`).

#[macro_use]
mod common;

#[path = "behaviour/blobs.rs"]
mod blobs;
#[path = "behaviour/concurrency.rs"]
mod concurrency;
#[path = "behaviour/gc.rs"]
mod gc;
#[path = "behaviour/gcs.rs"]
mod gcs;
#[path = "behaviour/listing.rs"]
mod listing;
#[path = "behaviour/manifests.rs"]
mod manifests;
#[path = "behaviour/outbox.rs"]
mod outbox;
#[path = "behaviour/overview.rs"]
mod overview;
#[path = "behaviour/probe.rs"]
mod probe;
#[path = "behaviour/read_cache.rs"]
mod read_cache;
#[path = "behaviour/retention.rs"]
mod retention;
#[path = "behaviour/uploads.rs"]
mod uploads;

behaviour_suite! {
    blobs {
        put_then_stat_and_get,
        put_with_wrong_digest_is_rejected,
        put_sha512,
        get_byte_ranges,
        not_visible_through_other_repository,
        delete_unlinks,
        same_bytes_in_two_repositories,
        mount_from_source,
        mount_from_repository_lacking_blob,
        mount_without_from,
        mount_unknown_digest,
    }
    uploads {
        chunked_without_range,
        chunked_with_range,
        out_of_order_range_is_refused,
        range_length_mismatch_is_refused,
        failing_body_leaves_offset,
        complete_with_final_chunk,
        complete_with_wrong_digest,
        complete_sha512_rehashes,
        empty_blob_monolithic,
        empty_blob_session_with_empty_final_chunk,
        empty_blob_session_without_body,
        empty_blob_session_without_body_sha512,
        complete_after_failed_append_ignores_garbage,
        status_reports_progress,
        cancel_forgets_session,
        session_bound_to_repository,
        session_survives_restart,
        reupload_of_stored_blob,
        large_blob_streamed,
    }
    manifests {
        put_by_tag_then_get_and_head,
        put_by_digest,
        media_type_as_pushed,
        digest_reference_mismatch,
        missing_blob_is_refused_and_nothing_written,
        index_with_missing_child_is_refused,
        invalid_manifest_is_refused,
        unknown_repository,
        unknown_repository_by_digest,
        delete_tag_leaves_manifest,
        delete_by_digest_removes_tags_and_referrer,
        retag_moves_tag,
        tag_reused_after_delete_by_digest,
    }
    listing {
        tags_sorted,
        tags_paginated,
        tags_of_unknown_repository,
        referrers_listed,
        referrers_filtered_by_artifact_type,
        referrers_of_unknown_subject,
        referrers_of_absent_subject_are_indexed,
        catalog_lists_repositories_with_content,
        catalog_paginated,
        catalog_pages_follow_name_order,
        tags_many_paginate_by_default,
        referrers_paginated,
    }
    overview {
        tag_times_newest_first,
        usage_recorded_and_read_back,
    }
    probe {
        probe_answers_on_empty_and_used_stores,
    }
    outbox {
        appended_records_come_back_in_order,
        failures_counted_and_dead_lettered,
        one_consumer_at_a_time,
    }
    gc {
        sweeps_unreferenced_and_keeps_reachable,
        grace_keeps_young_blobs,
        dry_run_removes_nothing,
        one_collection_at_a_time,
        head_then_reference_race,
    }
    retention {
        keeps_expected_tags_and_manifests,
        dry_run_lists_and_keeps,
        keep_within_by_push_time,
        index_children_of_kept_stay,
        racing_pushes_leave_no_broken_image,
    }
    read_cache {
        other_replicas_changes_are_seen_at_once,
        tag_cache_ttl_bounds_staleness,
        small_blobs_whole_and_ranged,
        cached_blob_size_needs_the_link,
    }
    concurrency {
        same_blob_pushed_twice_at_once,
        same_tag_put_twice_at_once,
        many_referrers_at_once,
        delete_by_digest_racing_retag_keeps_retag,
    }
}

/// Tests of `Storage::open` itself and of the filesystem tree, which are not
/// about one backend's behaviour.
mod open {
    use oci_storage::{Storage, StorageError};
    use oci_types::{Digest, Pagination};

    use crate::common::*;

    /// The probe of an S3 store that went away fails (or hangs in the
    /// client's retries, which the caller bounds with a timeout).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn probe_fails_once_s3_is_gone() {
        let server = oci_test_s3::S3Server::start().await.unwrap();
        let s = Storage::open_with(&server.url("registry"), &server.options())
            .await
            .unwrap();
        s.probe().await.unwrap();
        server.stop();
        // The abort takes effect when the runtime next runs the server's
        // task: wait until its listener is gone (its connections go with it).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while tokio::net::TcpStream::connect(server.addr()).await.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the S3 server did not stop"
            );
            tokio::task::yield_now().await;
        }
        let probed = tokio::time::timeout(std::time::Duration::from_secs(3), s.probe()).await;
        assert!(!matches!(probed, Ok(Ok(()))), "{probed:?}");
    }

    #[tokio::test]
    async fn rejects_unusable_urls() {
        for url in [
            "",
            "s3x://bucket/path",
            "http://example.com/x",
            "file://host/x",
        ] {
            assert_err!(
                Storage::open(url).await,
                StorageError::InvalidUrl { url: u, .. } if u == url
            );
        }
    }

    #[tokio::test]
    async fn describes_backend() {
        let s = Storage::open("memory://").await.unwrap();
        assert_eq!(s.description(), "memory://");
        let dir = tempfile::tempdir().unwrap();
        let canonical = dir.path().canonicalize().unwrap();
        let url = url::Url::from_file_path(dir.path()).unwrap().to_string();
        let by_url = Storage::open(&url).await.unwrap();
        let by_path = Storage::open(dir.path().to_str().unwrap()).await.unwrap();
        let want = format!("file://{}", canonical.display());
        assert_eq!(by_url.description(), want);
        assert_eq!(by_path.description(), want);
    }

    /// Two memory stores are separate; a file URL and a plain path to one
    /// directory (even one that does not exist yet) are the same store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn url_forms_share_or_separate_state() {
        let a = Storage::open("memory://").await.unwrap();
        let b = Storage::open("memory://").await.unwrap();
        let name = repo("r");
        push_blob(&a, &name, b"only in a").await;
        assert!(!b.repository_exists(&name).await.unwrap());

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("not/yet/created");
        let by_path = Storage::open(root.to_str().unwrap()).await.unwrap();
        let url = url::Url::from_file_path(&root).unwrap().to_string();
        let by_url = Storage::open(&url).await.unwrap();
        let image = push_image(&by_path, &name, "v1", "shared").await;
        let got = by_url.manifest_get(&name, &tag_ref("v1")).await.unwrap();
        assert_eq!(got.body, image.body);
        let (list, _) = by_url.catalog(&Pagination::default()).await.unwrap();
        assert_eq!(repo_names(&list), vec!["r"]);
    }

    /// The filesystem tree is the one the crate documentation describes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn filesystem_layout_matches_documentation() {
        let f = Fixture::filesystem().await;
        let s = &f.storage;
        let root = f.root().unwrap();
        let name = repo("org/app");
        let blob = push_blob(s, &name, b"layer bytes").await;
        let subject = push_image(s, &name, "v1", "x").await;
        let mut manifest = prepare_image(s, &name, "ref").await;
        manifest["subject"] = descriptor(OCI_MANIFEST, &subject.digest, subject.body.len());
        let referrer = put_manifest(s, &name, "@digest", &manifest).await;
        let id = s
            .upload_start(&name, oci_types::DigestAlgorithm::Sha256)
            .await
            .unwrap()
            .id;
        s.upload_append(&name, &id, None, body(b"partial"))
            .await
            .unwrap();

        let hex = |d: &Digest| d.hex().to_owned();
        let data = |d: &Digest| root.join(format!("blobs/sha256/{}/{}/data", &hex(d)[..2], hex(d)));
        assert_eq!(std::fs::read(data(&blob)).unwrap(), b"layer bytes");
        assert_eq!(std::fs::read(data(&subject.digest)).unwrap(), subject.body);
        let repo_dir = root.join("repositories/org/app");
        let link = std::fs::read_to_string(repo_dir.join(format!("_layers/sha256/{}", hex(&blob))))
            .unwrap();
        assert_eq!(link.trim(), blob.to_string());
        let mlink =
            std::fs::read(repo_dir.join(format!("_manifests/sha256/{}", hex(&subject.digest))))
                .unwrap();
        let mlink: serde_json::Value = serde_json::from_slice(&mlink).unwrap();
        assert_eq!(mlink["mediaType"], OCI_MANIFEST);
        assert_eq!(mlink["size"], subject.body.len());
        let t = std::fs::read_to_string(repo_dir.join("_tags/v1")).unwrap();
        assert_eq!(t.trim(), subject.digest.to_string());
        let entry = format!("_tagged/sha256/{}/v1", hex(&subject.digest));
        let entry = std::fs::read_to_string(repo_dir.join(entry)).unwrap();
        let mut lines = entry.lines();
        assert_eq!(lines.next(), Some(subject.digest.to_string().as_str()));
        // Then when that push happened, in Unix milliseconds.
        let pushed: u128 = lines.next().unwrap().parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        assert!(pushed <= now && now - pushed < 60_000, "{pushed} vs {now}");
        assert!(repo_dir.join("_tagged/_complete").is_file());
        let entry = repo_dir.join(format!(
            "_referrers/sha256/{}/sha256-{}",
            hex(&subject.digest),
            hex(&referrer.digest)
        ));
        let entry: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry).unwrap()).unwrap();
        assert_eq!(entry["digest"], referrer.digest.to_string());
        assert!(root.join("_catalog/org/app/_repository").is_file());
        let upload = root.join(format!("_uploads/{id}"));
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(upload.join("state.json")).unwrap()).unwrap();
        assert_eq!(state["repository"], "org/app");
        assert_eq!(state["offset"], 7);
        assert_eq!(std::fs::read(upload.join("data")).unwrap(), b"partial");
        // Completing removes the session's files.
        s.upload_complete(&name, &id, &Digest::of(b"partial"), None, None)
            .await
            .unwrap();
        assert!(!upload.join("state.json").exists());
        assert!(!upload.join("data").exists());
    }
}

// Azure, on Azurite (one Node.js process every test shares), runs the
// tests of what differs between object stores: conditional writes,
// multipart uploads, listings, locks. The volume tests (thousands of
// objects, many racing writers) overwhelm the emulator, not the backend.
backend_module!(azure,
    blobs {
        put_then_stat_and_get,
        get_byte_ranges,
        delete_unlinks,
        mount_from_source,
    }
    uploads {
        chunked_with_range,
        out_of_order_range_is_refused,
        complete_with_wrong_digest,
        complete_after_failed_append_ignores_garbage,
        cancel_forgets_session,
        session_survives_restart,
        large_blob_streamed,
    }
    manifests {
        put_by_tag_then_get_and_head,
        missing_blob_is_refused_and_nothing_written,
        delete_by_digest_removes_tags_and_referrer,
        retag_moves_tag,
    }
    listing {
        tags_paginated,
        catalog_paginated,
        referrers_listed,
    }
    outbox {
        appended_records_come_back_in_order,
        one_consumer_at_a_time,
    }
    gc {
        sweeps_unreferenced_and_keeps_reachable,
        one_collection_at_a_time,
    }
    retention {
        keeps_expected_tags_and_manifests,
    }
    read_cache {
        other_replicas_changes_are_seen_at_once,
        tag_cache_ttl_bounds_staleness,
        cached_blob_size_needs_the_link,
    }
    concurrency {
        same_tag_put_twice_at_once,
        delete_by_digest_racing_retag_keeps_retag,
    }
);
