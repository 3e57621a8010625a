//! Every configuration shipped under `deploy/` passes `oci-registry config
//! check`: the file baked into the image (also the systemd unit's) and the
//! TOML embedded in the Kubernetes ConfigMaps. A renamed or removed key
//! fails here rather than in a crash-looping pod.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::clear_env;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The literal blocks under `config.toml: |` in a YAML file, dedented.
/// Line-based rather than a YAML parser: the manifests are ours and use
/// only this form, and the count check below catches a block it misses.
fn embedded_configs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut configs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let key = line.trim();
        if key != "config.toml: |" && key != "config.toml: |-" {
            continue;
        }
        let key_indent = line.len() - line.trim_start().len();
        let body = &lines[i + 1..];
        let indent = body
            .iter()
            .find(|l| !l.trim().is_empty())
            .map_or(0, |l| l.len() - l.trim_start().len());
        assert!(indent > key_indent, "empty config.toml block");
        let mut toml = String::new();
        for l in body {
            if !l.trim().is_empty() && l.len() - l.trim_start().len() < indent {
                break;
            }
            toml.push_str(l.get(indent..).unwrap_or(""));
            toml.push('\n');
        }
        configs.push(toml);
    }
    configs
}

/// Where the Kubernetes manifests mount the TLS Secret.
const TLS_MOUNT: &str = "/etc/oci-registry/tls";

/// `config check` on `toml` with no `OCI_REGISTRY_*` variable of this
/// process leaking in; the effective configuration it prints. `config
/// check` loads the TLS files too: the Secret's mount point is pointed at a
/// freshly generated certificate.
fn check(name: &str, toml: &str) -> toml::Value {
    let dir = tempfile::tempdir().unwrap();
    let leaf = oci_e2e::certs::Ca::new("deploy test CA").server(1);
    std::fs::write(dir.path().join("tls.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &leaf.key_pem).unwrap();
    let toml = toml.replace(TLS_MOUNT, &dir.path().display().to_string());
    let file = dir.path().join("config.toml");
    std::fs::write(&file, toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oci-registry"));
    cmd.arg("config").arg("check").arg(&file);
    clear_env(&mut cmd);
    let out = cmd.output().expect("run oci-registry");
    assert!(
        out.status.success(),
        "{name}: config check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap()
}

#[test]
fn deploy_configs_pass_config_check() {
    let mut paths = Vec::new();
    files(&deploy_dir(), &mut paths);
    paths.sort();

    let mut checked = Vec::new();
    for path in &paths {
        let name = path
            .strip_prefix(deploy_dir())
            .unwrap()
            .display()
            .to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let configs = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => vec![text],
            Some("yaml" | "yml") => embedded_configs(&text),
            _ => continue,
        };
        for toml in configs {
            let effective = check(&name, &toml);
            // The Containerfile's EXPOSE, the Service and the probes
            // assume these ports.
            for (section, port) in [("server", ":5000"), ("metrics", ":5001")] {
                let listen = effective[section]["listen"].as_str().unwrap_or_default();
                assert!(listen.ends_with(port), "{name}: {section}.listen {listen}");
            }
            checked.push(name.clone());
        }
    }

    // The baked file and both ConfigMaps (base and S3 overlay), at least.
    assert!(checked.iter().any(|n| n == "config.toml"), "{checked:?}");
    assert!(checked.len() >= 3, "found only {checked:?}");
}
