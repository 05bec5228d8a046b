//! The raw value of a top-level JSON field, read from a line without parsing it: used to
//! partition events over workers and to key Kafka messages (`flow_id`, `src_ip`, ...).

use memchr::memmem::Finder;

/// Finds the value of one top-level field in a raw JSON line without parsing it.
pub struct FieldKey {
    finder: Finder<'static>,
}

impl FieldKey {
    /// A finder for field `key`.
    pub fn new(key: &str) -> Self {
        let needle = format!("\"{key}\":").into_bytes();
        Self {
            finder: Finder::new(&needle).into_owned(),
        }
    }

    /// The raw bytes of the field's value: a number as written, a string with its quotes.
    /// The first occurrence of `"key":` wins (EVE puts `flow_id`, `src_ip`, ... before any
    /// nested object).
    pub fn raw<'a>(&self, line: &'a [u8]) -> Option<&'a [u8]> {
        let start = self.finder.find(line)? + self.finder.needle().len();
        let rest = &line[start..];
        let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace())?..];
        let end = if rest.first() == Some(&b'"') {
            1 + rest[1..].iter().position(|&b| b == b'"')? + 1
        } else {
            rest.iter()
                .position(|&b| b == b',' || b == b'}' || b.is_ascii_whitespace())
                .unwrap_or(rest.len())
        };
        Some(&rest[..end])
    }

    /// The value without the quotes of a string.
    pub fn value<'a>(&self, line: &'a [u8]) -> Option<&'a [u8]> {
        let v = self.raw(line)?;
        Some(
            v.strip_prefix(b"\"")
                .and_then(|s| s.strip_suffix(b"\""))
                .unwrap_or(v),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_numbers_and_strings() {
        let k = FieldKey::new("flow_id");
        assert_eq!(
            k.raw(br#"{"a":1,"flow_id": 1251312473193421,"b":2}"#),
            Some(&b"1251312473193421"[..])
        );
        assert_eq!(k.raw(br#"{"flow_id":7}"#), Some(&b"7"[..]));
        assert_eq!(k.raw(br#"{"x":1}"#), None);
        let ip = FieldKey::new("src_ip");
        assert_eq!(
            ip.raw(br#"{"src_ip":"10.0.0.1","x":1}"#),
            Some(&b"\"10.0.0.1\""[..])
        );
        assert_eq!(
            ip.value(br#"{"src_ip":"10.0.0.1","x":1}"#),
            Some(&b"10.0.0.1"[..])
        );
    }
}
