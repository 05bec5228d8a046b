//! Scheme options: one row per option — name, typed kind with bounds, default, doc — and one
//! path that reads config.lua's `options = { ... }` against a scheme's rows, for every input
//! and every output.
//!
//! Behaviour: [`Opts::parse`] refuses an option the scheme does not list (naming the ones it
//! knows; a `*` row passes every other name on to a client library: librdkafka), and a value
//! its kind refuses, naming the scheme, the option, the value and what it should be
//! (`parquet:// option dictionary '1' is not true or false`). A value
//! is read as config.lua gave it (as text: `true`, `512`, `"0660"`): a boolean is `true` or
//! `false` only, an integer or a number is checked against its bounds (never capped quietly),
//! an octal mode is at most `0777`. A default is written once, in the row, as config.lua
//! would write it; the accessors give the default when the option was not given (a row
//! without a default is `None` then: the scheme decides, and its doc says what it does). The
//! reference's table of scheme options is generated from these rows
//! (`crates/dragonfly-io/tests/schemes_documented.rs` keeps docs/configuration.md equal to it).
//!
//! Cost: once per input or output, at config time.

use crate::uri::UriError;

/// What an option's value must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptKind {
    /// Any text.
    Text,
    /// Text that is not empty (a name: a group, a key, a consumer).
    Name,
    /// A path (relative ones as the scheme says).
    Path,
    /// File permissions in octal, as text (`"0660"`), at most `0777`.
    Octal,
    /// `true` or `false`.
    Bool,
    /// A whole number from `min` to `max`.
    Int {
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A number from `min` to `max`.
    Num {
        /// Smallest allowed.
        min: f64,
        /// Largest allowed.
        max: f64,
    },
    /// One of these words.
    Choice(&'static [&'static str]),
    /// The row named `*`: any other name, passed on as text to a client library.
    Any,
}

impl OptKind {
    /// As the reference writes the type.
    pub fn describe(&self) -> String {
        match self {
            OptKind::Text | OptKind::Any => "string".into(),
            OptKind::Name => "name".into(),
            OptKind::Path => "path".into(),
            OptKind::Octal => "string (octal)".into(),
            OptKind::Bool => "boolean".into(),
            OptKind::Int { min, max } => format!("integer {min}-{max}"),
            OptKind::Num { min, max } => format!("number {min}-{max}"),
            OptKind::Choice(words) => words.join(" \\| "),
        }
    }

    /// The value `v` read as this kind, or what it should have been.
    fn read(&self, v: &str) -> Result<OptValue, String> {
        let fail = |what: &str| Err(what.to_string());
        match self {
            OptKind::Text | OptKind::Path | OptKind::Any => Ok(OptValue::Text(v.to_string())),
            OptKind::Name if v.is_empty() => fail("a name (empty)"),
            OptKind::Name => Ok(OptValue::Text(v.to_string())),
            OptKind::Octal => match u32::from_str_radix(v.trim_start_matches("0o"), 8) {
                Ok(m) if m <= 0o777 && !v.is_empty() => Ok(OptValue::Int(u64::from(m))),
                _ => fail("octal permissions (e.g. \"0640\")"),
            },
            OptKind::Bool => match v {
                "true" => Ok(OptValue::Bool(true)),
                "false" => Ok(OptValue::Bool(false)),
                _ => fail("true or false"),
            },
            OptKind::Int { min, max } => match v.parse::<u64>() {
                Ok(n) if (*min..=*max).contains(&n) => Ok(OptValue::Int(n)),
                _ => fail(&format!("a whole number from {min} to {max}")),
            },
            OptKind::Num { min, max } => match v.parse::<f64>() {
                Ok(n) if n.is_finite() && (*min..=*max).contains(&n) => Ok(OptValue::Num(n)),
                _ => fail(&format!("a number from {min} to {max}")),
            },
            OptKind::Choice(words) => {
                if words.contains(&v) {
                    Ok(OptValue::Text(v.to_string()))
                } else {
                    fail(&format!("one of {}", words.join(", ")))
                }
            }
        }
    }
}

/// One option of a scheme: its row.
#[derive(Debug, Clone, Copy)]
pub struct OptionDoc {
    /// The option's name in `options = { ... }` (`*`: any other, see [`OptKind::Any`]).
    pub name: &'static str,
    /// What its value must be.
    pub kind: OptKind,
    /// Its default as config.lua would write it; `""`: none (the doc says what happens).
    pub default: &'static str,
    /// One line for the reference.
    pub doc: &'static str,
}

/// A value read by its row's kind.
#[derive(Debug, Clone, PartialEq)]
enum OptValue {
    Text(String),
    Bool(bool),
    Int(u64),
    Num(f64),
}

/// config.lua's options for one input or output, checked against the scheme's rows.
#[derive(Debug)]
pub struct Opts {
    rows: &'static [OptionDoc],
    given: Vec<(String, OptValue)>,
}

impl Opts {
    /// Check `given` (config.lua's options, as text) against `rows`: every problem is an
    /// error naming `scheme`, the option and the value.
    pub fn parse(
        scheme: &str,
        rows: &'static [OptionDoc],
        given: &[(String, String)],
    ) -> Result<Self, UriError> {
        let any = rows.iter().any(|r| r.name == "*");
        let mut out = Vec::with_capacity(given.len());
        for (k, v) in given {
            let value = match rows.iter().find(|r| r.name == k) {
                Some(row) => row.kind.read(v).map_err(|what| {
                    UriError::BadOption(format!("{scheme}:// option {k} '{v}' is not {what}"))
                })?,
                None if any => OptValue::Text(v.clone()),
                None if rows.is_empty() => {
                    return Err(UriError::BadOption(format!(
                        "{scheme}:// takes no options (got '{k}')"
                    )))
                }
                None => {
                    return Err(UriError::BadOption(format!(
                        "unknown option '{k}' for {scheme}:// (known: {})",
                        rows.iter().map(|o| o.name).collect::<Vec<_>>().join(", ")
                    )))
                }
            };
            out.push((k.clone(), value));
        }
        Ok(Self { rows, given: out })
    }

    /// A URI's query parameters (`kafka://B/T?group=G&commit_ms=500`) checked against the
    /// scheme's query rows: the same kinds, defaults and docs as options; errors name the
    /// URI. `extra` says what else the caller takes (names it removed first, e.g.
    /// librdkafka properties), for the message.
    pub fn parse_query(
        uri: &str,
        rows: &'static [OptionDoc],
        query: &[(&str, &str)],
        extra: &str,
    ) -> Result<Self, UriError> {
        let mut out = Vec::with_capacity(query.len());
        for (k, v) in query {
            let Some(row) = rows.iter().find(|r| r.name == *k) else {
                let mut known: Vec<String> = rows.iter().map(|r| format!("{}=", r.name)).collect();
                if !extra.is_empty() {
                    known.push(extra.to_string());
                }
                let known = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                return Err(crate::uri::bad_query(uri, k, v, &known));
            };
            let value = row.kind.read(v).map_err(|what| {
                UriError::BadQuery(format!("'{uri}': query parameter '{k}={v}' is not {what}"))
            })?;
            out.push((k.to_string(), value));
        }
        Ok(Self { rows, given: out })
    }

    /// The value given for `name`, or its row's default (None: neither, or no such row).
    fn value(&self, name: &str) -> Option<OptValue> {
        if let Some((_, v)) = self.given.iter().find(|(k, _)| k == name) {
            return Some(v.clone());
        }
        // a name without a row here is one the other role takes (an output's query
        // parameter on an input): never given, no default
        let row = self.rows.iter().find(|r| r.name == name)?;
        if row.default.is_empty() {
            return None;
        }
        Some(
            row.kind
                .read(row.default.trim_matches('"'))
                .unwrap_or_else(|e| panic!("the default of '{name}' {e}")),
        )
    }

    /// Whether config.lua gave `name`.
    pub fn given(&self, name: &str) -> bool {
        self.given.iter().any(|(k, _)| k == name)
    }

    /// A text, path or choice option.
    pub fn text(&self, name: &str) -> Option<String> {
        match self.value(name)? {
            OptValue::Text(s) => Some(s),
            other => panic!("option '{name}' is not text: {other:?}"),
        }
    }

    /// A boolean option.
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.value(name)? {
            OptValue::Bool(b) => Some(b),
            other => panic!("option '{name}' is not a boolean: {other:?}"),
        }
    }

    /// An integer (or octal) option.
    pub fn int(&self, name: &str) -> Option<u64> {
        match self.value(name)? {
            OptValue::Int(n) => Some(n),
            other => panic!("option '{name}' is not an integer: {other:?}"),
        }
    }

    /// A number option.
    pub fn num(&self, name: &str) -> Option<f64> {
        match self.value(name)? {
            OptValue::Num(n) => Some(n),
            OptValue::Int(n) => Some(n as f64),
            other => panic!("option '{name}' is not a number: {other:?}"),
        }
    }

    /// The options a `*` row passes on (every given name without a row of its own).
    pub fn passed_on(&self) -> Vec<(String, String)> {
        self.given
            .iter()
            .filter(|(k, _)| !self.rows.iter().any(|r| r.name == k))
            .filter_map(|(k, v)| match v {
                OptValue::Text(s) => Some((k.clone(), s.clone())),
                _ => None,
            })
            .collect()
    }
}

/// The reference's table of every scheme's options (docs/configuration.md holds it between
/// markers; a test keeps the two equal).
pub fn reference_table() -> String {
    let mut out =
        String::from("| scheme | option | type | default | meaning |\n|---|---|---|---|---|\n");
    let rows = crate::sources::SCHEMES
        .iter()
        .map(|s| (s.name, "input", s.query, s.options))
        .chain(
            crate::sinks::SCHEMES
                .iter()
                .map(|s| (s.name, "output", s.query, s.options)),
        );
    for (scheme, role, query, options) in rows {
        let query = query.iter().map(|o| (format!("`?{}=`", o.name), o));
        let options = options.iter().map(|o| {
            let name = if o.name == "*" {
                "any other".to_string()
            } else {
                format!("`{}`", o.name)
            };
            (name, o)
        });
        for (name, o) in query.chain(options) {
            let default = if o.default.is_empty() {
                "—".to_string()
            } else {
                format!("`{}`", o.default)
            };
            out.push_str(&format!(
                "| `{scheme}://` ({role}) | {name} | {} | {default} | {} |\n",
                o.kind.describe(),
                o.doc.replace('|', "\\|")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROWS: &[OptionDoc] = &[
        OptionDoc {
            name: "n",
            kind: OptKind::Int { min: 1, max: 64 },
            default: "4",
            doc: "",
        },
        OptionDoc {
            name: "b",
            kind: OptKind::Bool,
            default: "false",
            doc: "",
        },
        OptionDoc {
            name: "mode",
            kind: OptKind::Octal,
            default: "\"0640\"",
            doc: "",
        },
        OptionDoc {
            name: "t",
            kind: OptKind::Text,
            default: "",
            doc: "",
        },
    ];

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn values_are_typed_bounded_and_defaulted_from_the_row() {
        let o = Opts::parse("x", ROWS, &given(&[("n", "8"), ("b", "true")])).unwrap();
        assert_eq!(o.int("n"), Some(8));
        assert_eq!(o.bool("b"), Some(true));
        assert_eq!(o.int("mode"), Some(0o640));
        assert_eq!(o.text("t"), None);
        assert!(o.given("n") && !o.given("mode"));
        let d = Opts::parse("x", ROWS, &[]).unwrap();
        assert_eq!((d.int("n"), d.bool("b")), (Some(4), Some(false)));
    }

    #[test]
    fn a_bad_value_is_refused_with_its_name_never_capped_or_guessed() {
        for (k, v, why) in [
            ("n", "65", "'65' is not a whole number from 1 to 64"),
            ("n", "0", "'0' is not a whole number from 1 to 64"),
            ("n", "2.5", "'2.5' is not a whole number from 1 to 64"),
            ("b", "1", "'1' is not true or false"),
            ("b", "yes", "'yes' is not true or false"),
            ("mode", "0999", "'0999' is not octal permissions"),
            ("mode", "01777", "'01777' is not octal permissions"),
        ] {
            let e = Opts::parse("parquet", ROWS, &given(&[(k, v)])).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg == format!("parquet:// option {k} {why}")
                    || msg.starts_with(&format!("parquet:// option {k} {why} (")),
                "{msg}"
            );
        }
        let e = Opts::parse("parquet", ROWS, &given(&[("nn", "1")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown option 'nn' for parquet:// (known: n, b, mode, t)"
        );
        let e = Opts::parse("zfile", &[], &given(&[("a", "1")])).unwrap_err();
        assert_eq!(e.to_string(), "zfile:// takes no options (got 'a')");
    }

    #[test]
    fn schemes_refuse_what_they_do_not_take_through_the_one_path() {
        use std::path::Path;
        let o = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let out = |uri: &str, opts: &[(String, String)]| {
            crate::sinks::parse(uri, Path::new("/l"), opts)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let input = |uri: &str| {
            crate::sources::parse(uri, &[])
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        // typed, never capped or guessed
        assert_eq!(
            out("parquet://p", &o("dictionary", "1")).unwrap_err(),
            "parquet:// option dictionary '1' is not true or false"
        );
        assert_eq!(
            out("parquet://p", &o("threads", "65")).unwrap_err(),
            "parquet:// option threads '65' is not a whole number from 1 to 64"
        );
        assert!(out("parquet://p", &o("threads", "64")).is_ok());
        // a query parameter of the other role is refused, naming what this one takes
        let e = input("kafka://b:9092/t?key=flow_id").unwrap_err();
        assert!(
            e.contains("query parameter 'key=flow_id' is not understood (known: group=, commit_ms=, librdkafka properties (a.b=v))"),
            "{e}"
        );
        let e = out("kafka://b:9092/t?group=g", &[]).unwrap_err();
        assert!(e.contains("(known: key=, librdkafka"), "{e}");
        assert!(out("kafka://b:9092/t?key=flow_id&linger.ms=1", &[]).is_ok());
        assert!(input("kafka://b:9092/t?group=g&commit_ms=10&fetch.min.bytes=1").is_ok());
        let e = out("nats://h/s?jetstream=banana", &[]).unwrap_err();
        assert!(
            e.contains("'jetstream=banana' is not one of 1, true"),
            "{e}"
        );
        assert!(input("nats://h/s?jetstream=1").is_err());
        assert!(out("redis://h/k?consumer=c", &[]).is_err());
        assert!(input("redis://h/k?mode=rpush&consumer=c").is_ok());
        let e = input("redis://h/k?consumer=").unwrap_err();
        assert!(e.contains("'consumer=' is not a name (empty)"), "{e}");
    }

    #[test]
    fn every_schemes_defaults_read_as_their_kinds() {
        for (name, rows) in crate::sources::SCHEMES
            .iter()
            .flat_map(|s| [(s.name, s.options), (s.name, s.query)])
            .chain(
                crate::sinks::SCHEMES
                    .iter()
                    .flat_map(|s| [(s.name, s.options), (s.name, s.query)]),
            )
        {
            for r in rows.iter().filter(|r| !r.default.is_empty()) {
                assert!(
                    r.kind.read(r.default.trim_matches('"')).is_ok(),
                    "{name}:// option {}: default {} is not a {}",
                    r.name,
                    r.default,
                    r.kind.describe()
                );
            }
        }
    }
}
