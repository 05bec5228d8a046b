//! Script failures grouped by where they happen (script, line and kind), for the live page
//! and `GET /api/error_groups`: "80 × analyzer/new-domain.lua:27" instead of the last twenty
//! failures, most of them the same one.
//!
//! Behaviour: a failure's line is the one its message names (`analyzer/a.lua:27: attempt to
//! index field 'dns' (a nil value)`), else its traceback's first line inside a script; none
//! for a failure with neither (a timeout). Each group keeps its count, when it was first and
//! last seen, the last message, and an excerpt of the last failing event around the field the
//! message names (`field 'dns'` -> the text around `"dns":`), else its start.
//!
//! Bounded: at most [`MAX_GROUPS`] groups (a failure of a new place past that is counted in
//! `other`), messages and excerpts cut to [`MAX_TEXT`] bytes. Cost: one lock and a hash lookup
//! per failure (failures are the rare path).

use std::collections::HashMap;

use dragonfly_lua::Failure;
use serde_json::{json, Value};

/// Most groups kept.
pub const MAX_GROUPS: usize = 200;
/// Longest message or excerpt kept, in bytes.
pub const MAX_TEXT: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    script: String,
    line: Option<u32>,
    kind: &'static str,
}

#[derive(Debug, Clone)]
struct Group {
    count: u64,
    first: String,
    last: String,
    message: String,
    excerpt: String,
}

/// The groups (see the module docs).
#[derive(Debug, Default)]
pub struct ErrorGroups {
    groups: HashMap<Key, Group>,
    /// Failures of places past [`MAX_GROUPS`].
    other: u64,
}

impl ErrorGroups {
    /// Count a failure in its group.
    pub fn add(&mut self, f: &Failure) {
        let key = Key {
            script: f.error.script.clone(),
            line: line_of(&f.error.message).or_else(|| f.traceback.as_deref().and_then(line_of)),
            kind: f.kind.name(),
        };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let event = f.event_full.as_deref().unwrap_or(&f.event);
        let excerpt = excerpt(event, field_named(&f.error.message));
        let message = cut(&f.error.message, MAX_TEXT);
        if let Some(g) = self.groups.get_mut(&key) {
            g.count += 1;
            g.last = now;
            g.message = message;
            g.excerpt = excerpt;
            return;
        }
        if self.groups.len() >= MAX_GROUPS {
            self.other += 1;
            return;
        }
        self.groups.insert(
            key,
            Group {
                count: 1,
                first: now.clone(),
                last: now,
                message,
                excerpt,
            },
        );
    }

    /// `{"groups":[{script, line, kind, count, first, last, message, excerpt}], "other"}`,
    /// the most frequent first.
    pub fn to_json(&self) -> Value {
        let mut list: Vec<(&Key, &Group)> = self.groups.iter().collect();
        list.sort_by(|a, b| {
            b.1.count
                .cmp(&a.1.count)
                .then_with(|| (&a.0.script, a.0.line).cmp(&(&b.0.script, b.0.line)))
        });
        json!({
            "groups": list.iter().map(|(k, g)| json!({
                "script": k.script, "line": k.line, "kind": k.kind, "count": g.count,
                "first": g.first, "last": g.last, "message": g.message, "excerpt": g.excerpt,
            })).collect::<Vec<_>>(),
            "other": self.other,
        })
    }
}

/// The line a Lua message or traceback line names: `NAME.lua:27:` (the first such).
fn line_of(text: &str) -> Option<u32> {
    let mut rest = text;
    while let Some(i) = rest.find(".lua:") {
        let after = &rest[i + 5..];
        let digits: &str = &after[..after.bytes().take_while(u8::is_ascii_digit).count()];
        if !digits.is_empty() && after[digits.len()..].starts_with(':') {
            return digits.parse().ok();
        }
        rest = after;
    }
    None
}

/// The field a Lua message names: `field 'dns'`, `index 'x'`, else the first `'name'`.
fn field_named(message: &str) -> Option<&str> {
    fn quoted(s: &str) -> Option<&str> {
        let s = s.strip_prefix('\'')?;
        let end = s.find('\'')?;
        Some(&s[..end]).filter(|f| !f.is_empty())
    }
    for marker in ["field '", "index '"] {
        if let Some(i) = message.find(marker) {
            return quoted(&message[i + marker.len() - 1..]);
        }
    }
    message.find('\'').and_then(|i| quoted(&message[i..]))
}

/// The text of `event` around `"field":` (80 bytes before, the rest of [`MAX_TEXT`] after),
/// else its start; `...` marks a cut.
fn excerpt(event: &str, field: Option<&str>) -> String {
    let at = field.and_then(|f| event.find(&format!("\"{f}\":")));
    let Some(at) = at else {
        return cut(event, MAX_TEXT);
    };
    let mut start = at.saturating_sub(80);
    while !event.is_char_boundary(start) {
        start -= 1;
    }
    let body = cut(&event[start..], MAX_TEXT);
    if start > 0 {
        format!("...{body}")
    } else {
        body
    }
}

/// `s` cut to `max` bytes on a character boundary, `...` marking the cut.
fn cut(s: &str, max: usize) -> String {
    let mut s = s.to_string();
    dragonfly_event::text::truncate(&mut s, max);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use dragonfly_lua::{Caller, FailureKind, ScriptError};

    fn failure(script: &str, message: &str, event: &str) -> Failure {
        let mut f = Failure::bare(
            Caller::Analyzer(0),
            FailureKind::Error,
            ScriptError {
                script: script.into(),
                message: message.into(),
            },
            None,
        );
        f.event_full = Some(event.into());
        f
    }

    #[test]
    fn failures_group_by_script_line_and_kind_with_the_field_in_view() {
        let mut g = ErrorGroups::default();
        let pad = "x".repeat(400);
        let event = format!(r#"{{"pad":"{pad}","dns":null,"seq":1}}"#);
        for _ in 0..80 {
            g.add(&failure(
                "analyzer/new-domain.lua",
                "analyzer/new-domain.lua:27: attempt to index field 'dns' (a nil value)",
                &event,
            ));
        }
        g.add(&failure(
            "analyzer/new-domain.lua",
            "analyzer/new-domain.lua:40: boom",
            "{}",
        ));
        let v = g.to_json();
        let first = &v["groups"][0];
        assert_eq!(first["count"], 80);
        assert_eq!(first["line"], 27);
        assert_eq!(first["kind"], "error");
        let ex = first["excerpt"].as_str().unwrap();
        assert!(ex.starts_with("...") && ex.contains("\"dns\":null"), "{ex}");
        assert_eq!(v["groups"][1]["line"], 40);
        assert_eq!(v["groups"][1]["count"], 1);
        // a message without a line: none
        g.add(&failure("a.lua", "script timeout", "{}"));
        assert!(g.to_json()["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["line"].is_null()));
        // bounded
        for i in 0..(MAX_GROUPS + 10) {
            g.add(&failure("b.lua", &format!("b.lua:{i}: x"), "{}"));
        }
        let v = g.to_json();
        assert_eq!(v["groups"].as_array().unwrap().len(), MAX_GROUPS);
        assert_eq!(v["other"], 13);
    }

    #[test]
    fn lines_and_fields_are_read_from_lua_messages() {
        assert_eq!(line_of("analyzer/a.lua:12: in function 'loop'"), Some(12));
        assert_eq!(line_of("x.lua:y: z.lua:7: boom"), Some(7));
        assert_eq!(line_of("no line here"), None);
        assert_eq!(
            field_named("attempt to index field 'dns' (a nil value)"),
            Some("dns")
        );
        assert_eq!(field_named("attempt to compare number with nil"), None);
        assert_eq!(field_named("bad argument #1 to 'find'"), Some("find"));
        assert_eq!(excerpt("{\"a\":1}", Some("zz")), "{\"a\":1}");
        let long = "é".repeat(400);
        assert!(cut(&long, 301).ends_with("..."));
    }
}
