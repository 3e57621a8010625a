//! `oci-test-s3`: runs the test S3 server standalone, to try the registry's
//! S3 backend by hand:
//!
//! ```text
//! $ cargo run -p oci-test-s3
//! export AWS_ENDPOINT=http://127.0.0.1:9000
//! ...
//! # storage URL: s3://oci-test/registry
//! ```
//!
//! then, in another shell, `eval` the `export` lines and run
//! `oci-registry serve --storage s3://oci-test/registry`. Objects are kept
//! in memory: they are gone when the server stops (Ctrl-C).

use std::net::SocketAddr;

use clap::Parser;
use oci_test_s3::S3Server;

/// An in-memory S3 server with one bucket and fixed credentials, for trying
/// the registry's S3 backend.
#[derive(Debug, Parser)]
#[command(name = "oci-test-s3", version)]
struct Args {
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Key prefix of the printed storage URL.
    #[arg(long, default_value = "registry")]
    prefix: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let server = S3Server::serve(args.listen).await?;
    for (key, value) in server.env() {
        println!("export {key}={value}");
    }
    println!("# storage URL: {}", server.url(&args.prefix));
    println!(
        "# listening on {}; objects are kept in memory until Ctrl-C",
        server.addr()
    );
    tokio::signal::ctrl_c().await?;
    drop(server);
    Ok(())
}
