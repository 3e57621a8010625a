//! `Content-Range` and `Range`: parsing never panics, lengths never
//! overflow, and a resolved range always lies inside the blob.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_types::{ByteRange, ContentRange, Pagination};

fuzz_target!(|input: (&str, u64)| {
    let (text, size) = input;
    if let Ok(r) = text.parse::<ContentRange>() {
        assert!(r.start() <= r.end());
        assert_eq!(u128::from(r.len()), u128::from(r.end()) - u128::from(r.start()) + 1);
    }
    if let Ok(r) = text.parse::<ByteRange>()
        && let Some(range) = r.resolve(size)
    {
        assert!(range.start < range.end && range.end <= size);
    }
    if let Ok(p) = Pagination::from_params(Some(text), Some(text)) {
        let (page, _) = p.apply(vec!["a", "b", "c"], 2);
        assert!(page.len() <= p.n.unwrap_or(2));
    }
});
