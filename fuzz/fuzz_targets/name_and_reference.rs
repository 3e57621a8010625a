//! Repository names, tags and references: whatever parses prints back to
//! itself and stays within the spec's grammar limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_types::{Reference, RepositoryName, Tag};

fuzz_target!(|text: &str| {
    if let Ok(name) = text.parse::<RepositoryName>() {
        assert_eq!(name.as_str(), text);
        assert!(text.len() <= 255);
        assert!(!text.contains("//") && !text.starts_with('/') && !text.ends_with('/'));
        assert!(!text.split('/').any(|seg| seg == "." || seg == ".."));
    }
    if let Ok(tag) = text.parse::<Tag>() {
        assert_eq!(tag.as_str(), text);
        assert!(text.len() <= 128);
    }
    if let Ok(reference) = text.parse::<Reference>() {
        assert_eq!(reference.to_string().parse::<Reference>().unwrap(), reference);
    }
});
