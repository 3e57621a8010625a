//! Support for tests that drive real client tools (curl, skopeo, podman)
//! against a [`crate::TestServer`].
//!
//! Tool tests skip with a `SKIP` line when the tool is missing, and fail
//! instead when `OCI_E2E_REQUIRE_TOOLS=1` (as CI sets).

use std::process::Command;

use crate::{Descriptor, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, TestServer, image_manifest};

/// Whether `tool` can be run; when not: panics if `OCI_E2E_REQUIRE_TOOLS=1`,
/// else prints a skip line for `test`.
pub fn have_tool(tool: &str, test: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("OCI_E2E_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("{tool} is required (OCI_E2E_REQUIRE_TOOLS=1) but cannot be run");
        }
        eprintln!("SKIP {test}: {tool} is not installed (set OCI_E2E_REQUIRE_TOOLS=1 to fail)");
    }
    found
}

/// Runs a command off the async threads; returns (success, stdout, stderr).
pub async fn run(mut cmd: Command) -> (bool, String, String) {
    let shown = format!("{cmd:?}");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("running {shown}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A one-file tar archive (ustar), as a real image layer.
pub fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let mut put = |at: usize, field: &[u8]| header[at..at + field.len()].copy_from_slice(field);
    put(0, name.as_bytes());
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{:011o}\0", data.len()).as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(data);
    tar.resize(tar.len().next_multiple_of(512) + 1024, 0);
    tar
}

/// Pushes a runnable-looking image (one uncompressed tar layer holding
/// `hello.txt` with `content`, a config whose `diff_ids` match it, this
/// machine's architecture) that container engines can unpack; returns its
/// manifest digest.
pub async fn push_real_image(srv: &TestServer, name: &str, tag: &str, content: &[u8]) -> String {
    let layer = tar_of("hello.txt", content);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [crate::sha256_digest(&layer)] },
    }))
    .unwrap();
    srv.push_blob(name, &config).await;
    srv.push_blob(name, &layer).await;
    let manifest = image_manifest(
        &Descriptor::of(OCI_CONFIG, &config),
        &[Descriptor::of(OCI_LAYER, &layer)],
        None,
        None,
        None,
    );
    srv.push_manifest(name, tag, OCI_MANIFEST, &manifest).await
}
