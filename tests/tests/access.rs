//! Request ids over real HTTP: a plausible `X-Request-Id` is echoed, any
//! other (or none) is replaced by a fresh UUID, on successes and errors
//! alike. (The access-log line itself is tested against the binary, in
//! `crates/oci-registry-bin/tests/cli.rs`.)

use oci_e2e::{Backend, TestServer, header};
use reqwest::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_or_generated() {
    let srv = TestServer::start(Backend::Memory).await;
    for (path, status) in [
        ("/v2/", StatusCode::OK),
        ("/v2/a/manifests/missing", StatusCode::NOT_FOUND),
        ("/nope", StatusCode::NOT_FOUND),
    ] {
        let resp = srv
            .req(Method::GET, path)
            .header("x-request-id", "ci-42.run_7:a")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{path}");
        assert_eq!(
            header(&resp, "x-request-id").as_deref(),
            Some("ci-42.run_7:a")
        );

        let mut ids = Vec::new();
        for given in [None, Some("bad id with spaces"), Some("x;y")] {
            let mut req = srv.req(Method::GET, path);
            if let Some(given) = given {
                req = req.header("x-request-id", given);
            }
            let resp = req.send().await.unwrap();
            let id = header(&resp, "x-request-id").expect("an id on every response");
            assert!(uuid_like(&id), "{path}: {id:?}");
            ids.push(id);
        }
        ids.dedup();
        assert_eq!(ids.len(), 3, "fresh ids differ");
    }
    srv.stop().await;
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}
