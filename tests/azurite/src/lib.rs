//! Test support: [Azurite](https://github.com/Azure/Azurite), the Azure
//! Storage emulator (npm `azurite`), for exercising the registry's
//! `az://` backend through the real Azure Blob protocol.
//!
//! Every [`Azurite::start`] gets a fresh container on the machine's
//! Azurite at `127.0.0.1:10000` (object_store's emulator address), starting
//! one when nothing answers there: `azurite-blob` from `$OCI_TEST_AZURITE`,
//! the `PATH`, or `target/tools/node_modules/.bin` (where `.ci/run`
//! installs it with npm). The emulator keeps running after the tests (in
//! memory, so it holds nothing once stopped); containers are never reused.

use std::time::SystemTime;

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use oci_test_emulator::Emulator;

/// Where object_store looks for the emulator (`azure_storage_use_emulator`).
const ADDRESS: &str = "127.0.0.1:10000";

/// The emulator's well-known development account.
const ACCOUNT: &str = "devstoreaccount1";

/// Its well-known key (public: Azurite's documentation).
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A container on the machine's Azurite.
#[derive(Debug, Clone)]
pub struct Azurite {
    container: String,
}

impl Azurite {
    /// A fresh container, the emulator started if needed. Errors say why
    /// the emulator is not available (not installed, did not start).
    pub async fn start() -> Result<Azurite, String> {
        AZURITE.ensure_running().await?;
        let container = format!("t{}", uuid::Uuid::new_v4().simple());
        create_container(&container).await?;
        Ok(Azurite { container })
    }

    /// `az://<container>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("az://{}/{prefix}", self.container)
    }

    /// The backend options that point object_store at the emulator.
    pub fn options(&self) -> Vec<(String, String)> {
        vec![("azure_storage_use_emulator".into(), "true".into())]
    }
}

/// Azurite's blob service, as `.ci/run` installs and starts it.
const AZURITE: Emulator = Emulator {
    name: "Azurite",
    env: "OCI_TEST_AZURITE",
    program: "azurite-blob",
    installed: "target/tools/node_modules/.bin/azurite-blob",
    install: "`npm install --prefix target/tools azurite@3` (bash .ci/run does)",
    address: ADDRESS,
    args: &[
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        "10000",
        "--inMemoryPersistence",
        "--skipApiVersionCheck",
        // It would otherwise try to reach Microsoft's telemetry service
        // (unreachable from CI; it logs the failure).
        "--disableTelemetry",
        "--silent",
    ],
};

/// Whether tests should run on Azurite (see [`Emulator::available`]).
pub fn available() -> bool {
    AZURITE.available()
}

/// Says that an Azure test is skipped, and why.
pub fn skip_note() {
    eprintln!(
        "skipped: Azurite is not installed (npm install --prefix target/tools azurite@3; \
         OCI_E2E_REQUIRE_TOOLS=1 makes this a failure)"
    );
}

/// `PUT /<account>/<container>?restype=container`, signed with the
/// account's shared key (Azure "Authorize with Shared Key").
async fn create_container(container: &str) -> Result<(), String> {
    let date = httpdate::fmt_http_date(SystemTime::now());
    let version = "2021-08-06";
    let resource = format!("/{ACCOUNT}/{ACCOUNT}/{container}\nrestype:container");
    let to_sign =
        format!("PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n{resource}");
    let key = base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .map_err(|e| e.to_string())?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let response = reqwest::Client::new()
        .put(format!(
            "http://{ADDRESS}/{ACCOUNT}/{container}?restype=container"
        ))
        .header("x-ms-date", date)
        .header("x-ms-version", version)
        .header("authorization", format!("SharedKey {ACCOUNT}:{signature}"))
        .header("content-length", "0")
        .send()
        .await
        .map_err(|e| format!("creating container {container}: {e}"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Err(format!("creating container {container}: {status}: {body}"))
    }
}
