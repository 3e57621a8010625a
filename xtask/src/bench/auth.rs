//! `--auth`: ours with access control, to measure what checking every
//! request costs. One account, `bench`, is admin; in token mode the bench
//! fetches one token for its repository (valid for the whole run) and
//! sends it with every request, as a client reusing its token does.

use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::AuthMode;
use super::target::Target;
use crate::server::Error;

const USER: &str = "bench";
const PASSWORD: &str = "bench-password";

/// Writes the htpasswd and the configuration file for `mode` into `dir`;
/// returns the configuration file.
pub fn write_config(dir: &Path, mode: AuthMode) -> Result<PathBuf, Error> {
    let htpasswd = dir.join("htpasswd");
    // Cost 5, as `htpasswd -B` writes by default.
    let hash = bcrypt::hash(PASSWORD, 5)?;
    std::fs::write(&htpasswd, format!("{USER}:{hash}\n"))?;
    let mode = match mode {
        AuthMode::Basic => "basic",
        AuthMode::Token => "token",
    };
    let config = dir.join("auth.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nmode = \"{mode}\"\nhtpasswd = {htpasswd:?}\n[auth.token]\nttl = \"24h\"\n\
             [access]\nadmins = [\"{USER}\"]\n"
        ),
    )?;
    Ok(config)
}

/// The `Authorization` header for `target`: Basic credentials, or a token
/// from its `/auth/token` for pull and push on `bench`.
pub async fn authorization(target: &Target, mode: AuthMode) -> Result<String, Error> {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    if mode == AuthMode::Basic {
        return Ok(basic);
    }
    let response = reqwest::Client::new()
        .get(format!(
            "{}/auth/token?service=oci-registry&scope=repository:bench:pull,push",
            target.base
        ))
        .header("authorization", basic)
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(format!("token request: {}", response.status()).into());
    }
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await?)?;
    let token = body["token"]
        .as_str()
        .ok_or("token response without a token")?;
    Ok(format!("Bearer {token}"))
}
