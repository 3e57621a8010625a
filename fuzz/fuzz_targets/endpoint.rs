//! Request routing: any method and path either routes to an endpoint whose
//! parts are valid, is not a route (404), or is a spec error; never a panic.
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use oci_http::Endpoint;

const METHODS: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::PUT,
    Method::POST,
    Method::PATCH,
    Method::DELETE,
];

fuzz_target!(|input: (u8, &str)| {
    let (m, path) = input;
    let method = &METHODS[usize::from(m) % METHODS.len()];
    if let Ok(Some(endpoint)) = Endpoint::parse(method, path) {
        // Every routed endpoint names its methods, and 405 can say them.
        assert!(!endpoint.methods().is_empty());
        let _ = endpoint.allowed();
        match endpoint {
            Endpoint::Blob { name, digest } | Endpoint::Referrers { name, digest } => {
                assert_eq!(name.as_str().parse::<oci_types::RepositoryName>().unwrap(), name);
                assert_eq!(digest.as_str().parse::<oci_types::Digest>().unwrap(), digest);
            }
            Endpoint::Manifest { name, reference } => {
                assert_eq!(name.as_str().parse::<oci_types::RepositoryName>().unwrap(), name);
                assert_eq!(reference.to_string().parse::<oci_types::Reference>().unwrap(), reference);
            }
            _ => {}
        }
    }
});
