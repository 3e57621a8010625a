//! Digests: a parsed digest prints back to the same text and parses again
//! to the same value; hashing never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_types::{Digest, DigestAlgorithm, DigestHasher};

fuzz_target!(|input: (&str, &[u8])| {
    let (text, bytes) = input;
    if let Ok(d) = text.parse::<Digest>() {
        assert_eq!(d.as_str(), text);
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert_eq!(d.hex().len(), d.algorithm().hex_len());
    }
    for alg in [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512] {
        let mut h = DigestHasher::new(alg);
        let (a, b) = bytes.split_at(bytes.len() / 2);
        h.update(a);
        let saved = h.save();
        let mut h = DigestHasher::restore(alg, &saved).unwrap();
        h.update(b);
        assert_eq!(h.finalize(), Digest::of_with(alg, bytes));
    }
    // A saved state from arbitrary bytes restores or is refused.
    let _ = DigestHasher::restore(DigestAlgorithm::Sha256, bytes);
});
