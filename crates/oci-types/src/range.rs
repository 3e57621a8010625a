//! Byte ranges: `Content-Range` on chunk uploads and `Range` on blob GETs.

use std::ops::Range;
use std::str::FromStr;

use crate::error::{Error, clip};

/// The `Content-Range` of a chunked upload PATCH: inclusive `start-end`
/// (distribution-spec "Pushing a blob in chunks": `^[0-9]+-[0-9]+$`).
/// The HTTP form `bytes start-end/total` is accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    start: u64,
    end: u64,
}

impl ContentRange {
    /// A range from `start` to `end` inclusive; `None` if `end < start` or
    /// if its length does not fit a `u64` (`0-18446744073709551615`).
    pub fn new(start: u64, end: u64) -> Option<Self> {
        let valid = end >= start && (end - start).checked_add(1).is_some();
        valid.then_some(Self { start, end })
    }

    /// First byte offset.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Last byte offset, inclusive.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Number of bytes the range covers.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Always false: a range covers at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl FromStr for ContentRange {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let err = || Error::InvalidRange(clip(s));
        let t = s.trim();
        let t = t.strip_prefix("bytes ").unwrap_or(t);
        let t = t.split_once('/').map_or(t, |(r, _total)| r);
        let (a, b) = t.split_once('-').ok_or_else(err)?;
        let (start, end) = (parse_u64(a).ok_or_else(err)?, parse_u64(b).ok_or_else(err)?);
        Self::new(start, end).ok_or_else(err)
    }
}

/// A single-range `Range` request header on a blob GET (RFC 9110 §14.1.2):
/// `bytes=a-b`, `bytes=a-` or `bytes=-n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (inclusive) or `bytes=a-` (`end` is `None`).
    From {
        /// First byte.
        start: u64,
        /// Last byte, inclusive, if given.
        end: Option<u64>,
    },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The half-open byte range this selects in an object of `size` bytes,
    /// or `None` when it is unsatisfiable (answered with 416).
    pub fn resolve(&self, size: u64) -> Option<Range<u64>> {
        match *self {
            Self::From { start, end } => {
                if start >= size {
                    return None;
                }
                let end = end.map_or(size - 1, |e| e.min(size - 1));
                Some(start..end + 1)
            }
            Self::Suffix(0) => None,
            Self::Suffix(_) if size == 0 => None,
            Self::Suffix(n) => Some(size.saturating_sub(n)..size),
        }
    }
}

impl FromStr for ByteRange {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let err = || Error::InvalidRange(clip(s));
        let spec = s.trim().strip_prefix("bytes=").ok_or_else(err)?;
        if spec.contains(',') {
            return Err(err());
        }
        let (a, b) = spec.trim().split_once('-').ok_or_else(err)?;
        if a.is_empty() {
            return Ok(Self::Suffix(parse_u64(b).ok_or_else(err)?));
        }
        let start = parse_u64(a).ok_or_else(err)?;
        let end = if b.is_empty() {
            None
        } else {
            let end = parse_u64(b).ok_or_else(err)?;
            if end < start {
                return Err(err());
            }
            Some(end)
        };
        Ok(Self::From { start, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn content_range_forms() {
        let r: ContentRange = "0-99".parse().unwrap();
        assert_eq!((r.start(), r.end(), r.len()), (0, 99, 100));
        let r: ContentRange = "bytes 10-19/*".parse().unwrap();
        assert_eq!((r.start(), r.len()), (10, 10));
        for bad in [
            "",
            "-",
            "5-4",
            "a-b",
            "1-",
            "-1",
            "1--2",
            "+1-2",
            "99999999999999999999-1",
            "0-18446744073709551615",
        ] {
            assert!(bad.parse::<ContentRange>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn byte_range_resolution() {
        let r = |s: &str| s.parse::<ByteRange>().unwrap();
        assert_eq!(r("bytes=0-9").resolve(100), Some(0..10));
        assert_eq!(r("bytes=90-").resolve(100), Some(90..100));
        assert_eq!(r("bytes=90-200").resolve(100), Some(90..100));
        assert_eq!(r("bytes=-10").resolve(100), Some(90..100));
        assert_eq!(r("bytes=-200").resolve(100), Some(0..100));
        assert_eq!(r("bytes=100-").resolve(100), None);
        assert_eq!(r("bytes=-0").resolve(100), None);
        assert_eq!(r("bytes=0-").resolve(0), None);
        for bad in [
            "0-9",
            "bytes=",
            "bytes=a-",
            "bytes=5-4",
            "bytes=0-1,3-4",
            "items=0-1",
        ] {
            assert!(bad.parse::<ByteRange>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_widest_ranges_have_lengths() {
        let r: ContentRange = "1-18446744073709551615".parse().unwrap();
        assert_eq!(r.len(), u64::MAX);
        let r: ContentRange = "18446744073709551615-18446744073709551615".parse().unwrap();
        assert_eq!(r.len(), 1);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*", size in any::<u64>()) {
            if let Ok(r) = s.parse::<ContentRange>() {
                prop_assert_ne!(r.len(), 0);
            }
            if let Some(range) = s.parse::<ByteRange>().ok().and_then(|r| r.resolve(size)) {
                prop_assert!(range.start < range.end && range.end <= size);
            }
        }

        #[test]
        fn any_two_numbers_parse_or_refuse_without_panicking(a in any::<u64>(), b in any::<u64>()) {
            if let Ok(r) = format!("{a}-{b}").parse::<ContentRange>() {
                prop_assert_eq!(u128::from(r.len()), u128::from(b) - u128::from(a) + 1);
            }
        }

        #[test]
        fn content_range_round_trip(a in 0u64..1 << 40, len in 1u64..1 << 40) {
            let s = format!("{}-{}", a, a + len - 1);
            let r: ContentRange = s.parse().unwrap();
            prop_assert_eq!(format!("{}-{}", r.start(), r.end()), s);
            prop_assert_eq!(r.len(), len);
        }
    }
}
