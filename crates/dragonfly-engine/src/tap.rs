//! The tap: sample events as they leave an input, enter an analyzer or reach an output, for a
//! person watching a running engine (`dragonfly-mle tap`, `GET /api/tap` on the HTTP
//! listener: [`crate::http`]).
//!
//! Behaviour: a tap names its stages (none: every stage of the pipeline), field filters
//! (`dns.rrname=example.com`, a dotted path into the event and a value; every filter must
//! match) and a rate (events per second, at most [`MAX_RATE`], default [`DEFAULT_RATE`]). It
//! gets, one JSON line each, the events at those stages that match, at most its rate (a token
//! bucket holding one second's worth): a sample, never a copy of the stream. Each line is
//! `{"time":..,"stage":"input"|"analyzer"|"output","tag":..,"event":..}`, the event as it is
//! at that point: an input's line as read (a line that is not JSON comes as
//! `"malformed":true,"text":..`), the value an analyzer is handed (encoded as an output
//! would), an output's line. An event over [`MAX_EVENT_BYTES`] comes cut:
//! `"cut":BYTES,"text":..` (its first bytes as text).
//!
//! Matching ([`FieldMatch`]): a string field equals the value exactly; a number equals it by
//! value (`dest_port=443` matches `443` and `443.0`); `true`, `false` and `null` match
//! themselves; an object or a list never matches; a missing field never matches.
//!
//! Guarantees: the pipeline never waits for a tap. A tap's queue holds [`QUEUE`] lines; a line
//! that finds it full (a slow client) is dropped and counted (`tap_dropped`). At most
//! [`MAX_TAPS`] taps at once; another is refused. A tap ends when its client goes (its queue's
//! receiver dropped). Events are attacker-shaped, so every line is safe to print on a terminal
//! and to put in a page as text: it is JSON (control characters escaped), and the characters
//! a terminal or a page would act on or hide — C1 controls, DEL, bidirectional overrides,
//! zero-width and line/paragraph separators — are written as `\uXXXX` escapes ([`escape`]).
//!
//! Cost: with no tap, one relaxed atomic load per batch in each worker and, in LuaJIT, one
//! table lookup per hand-off between analyzers. With a tap, per batch: a lock, and for each
//! tapped stage a look at its events while the tap has tokens for this batch (a field lookup
//! per filter per event looked at; a filtered tap looks at every event of its stage until it
//! has taken its share); a JSON encoding per sampled analyzer event. Measured in
//! docs/benchmarks.md ("The tap").

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dragonfly_event::json::{skip_ws, Fields};
use dragonfly_event::sync::Locked;
use dragonfly_event::Batch;
use dragonfly_lua::TapPlan;

/// Most taps at once.
pub const MAX_TAPS: usize = 8;
/// Most events per second a tap may ask for.
pub const MAX_RATE: u32 = 1000;
/// Events per second when a tap does not say.
pub const DEFAULT_RATE: u32 = 10;
/// Lines a tap's queue holds before new ones are dropped.
pub const QUEUE: usize = 256;
/// Largest event shown whole.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Most filters one tap may give.
pub const MAX_FILTERS: usize = 8;

/// Where in the pipeline a tap looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Lines as an input hands them on (before its filter).
    Input,
    /// Values as an analyzer is handed them.
    Analyzer,
    /// Lines as they reach an output.
    Output,
}

impl Kind {
    /// Its name in a tap's lines and requests.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Input => "input",
            Kind::Analyzer => "analyzer",
            Kind::Output => "output",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "input" => Some(Kind::Input),
            "analyzer" => Some(Kind::Analyzer),
            "output" => Some(Kind::Output),
            _ => None,
        }
    }
}

/// One filter of a tap: `PATH=VALUE` (see the module docs for how values compare).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMatch {
    /// The field's path (`dns.rrname` -> `["dns", "rrname"]`).
    pub path: Vec<String>,
    /// The value it must have.
    pub value: String,
}

impl FieldMatch {
    /// Parse `PATH=VALUE`: a path of one or more names joined by dots, none empty.
    pub fn parse(s: &str) -> Result<FieldMatch, String> {
        let (path, value) = s
            .split_once('=')
            .ok_or_else(|| format!("filter {s:?}: expected FIELD=VALUE"))?;
        let path: Vec<String> = path.split('.').map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            return Err(format!(
                "filter {s:?}: the field must be a name or a dotted path (dns.rrname)"
            ));
        }
        Ok(FieldMatch {
            path,
            value: value.to_string(),
        })
    }

    /// Whether the JSON object in `line` has the field with the value. A line that is not a
    /// JSON object never matches (and never panics).
    pub fn matches(&self, line: &[u8]) -> bool {
        let mut cur = line;
        for name in &self.path {
            let obj = &cur[skip_ws(cur, 0).min(cur.len())..];
            match Fields::new(obj).find(|f| obj.get(f.key.clone()) == Some(name.as_bytes())) {
                Some(f) => cur = &obj[f.value],
                None => return false,
            }
        }
        value_is(cur, &self.value)
    }
}

/// Whether the raw JSON value `raw` is `want` (strings exactly, numbers by value, literals as
/// written; objects and lists never).
fn value_is(raw: &[u8], want: &str) -> bool {
    match raw.first() {
        Some(b'"') if raw.contains(&b'\\') => {
            serde_json::from_slice::<String>(raw).is_ok_and(|s| s == want)
        }
        Some(b'"') => raw.len() >= 2 && &raw[1..raw.len() - 1] == want.as_bytes(),
        Some(b't' | b'f' | b'n') => raw == want.as_bytes(),
        Some(b'{' | b'[') | None => false,
        Some(_) => {
            let n = std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.parse::<f64>().ok());
            matches!((n, want.parse::<f64>()), (Some(a), Ok(b)) if a == b)
        }
    }
}

/// What a client asks to see.
#[derive(Debug, Clone)]
pub struct Request {
    /// The stages (kind, index); empty: every stage.
    pub stages: Vec<(Kind, usize)>,
    /// Filters, all of which must match.
    pub filters: Vec<FieldMatch>,
    /// Events per second.
    pub rate: u32,
}

/// One tap as the engine keeps it.
struct Sub {
    id: u64,
    stages: Vec<(Kind, usize)>,
    filters: Vec<FieldMatch>,
    rate: f64,
    tokens: f64,
    last: Instant,
    tx: tokio::sync::mpsc::Sender<String>,
}

impl Sub {
    fn wants(&self, kind: Kind, index: usize) -> bool {
        self.stages.is_empty() || self.stages.contains(&(kind, index))
    }

    /// Refill the bucket up to now (at most one second's worth).
    fn refill(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate.max(1.0));
    }

    fn matches(&self, line: &[u8]) -> bool {
        self.filters.iter().all(|f| f.matches(line))
    }
}

/// Every tap of the engine, shared by the workers (which offer events) and the HTTP listener
/// (which adds taps). See the module docs.
pub struct Taps {
    inputs: Vec<String>,
    analyzers: Vec<String>,
    outputs: Vec<String>,
    /// Taps open (read without the lock: the workers' fast check).
    open: AtomicUsize,
    next_id: AtomicU64,
    subs: Mutex<Vec<Sub>>,
    /// Lines handed to taps.
    pub events: AtomicU64,
    /// Lines dropped because a tap's queue was full.
    pub dropped: AtomicU64,
}

/// An open tap: its lines arrive on `lines`; dropping it ends the tap.
pub struct Tap {
    /// The tap's lines (each one JSON object, no newline).
    pub lines: tokio::sync::mpsc::Receiver<String>,
    id: u64,
    taps: Arc<Taps>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.taps.remove(self.id);
    }
}

impl Taps {
    /// No taps yet, for a pipeline of these tags.
    pub fn new(inputs: Vec<String>, analyzers: Vec<String>, outputs: Vec<String>) -> Self {
        Taps {
            inputs,
            analyzers,
            outputs,
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            subs: Mutex::new(Vec::new()),
            events: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Whether any tap is open (one relaxed load).
    #[inline]
    pub fn on(&self) -> bool {
        self.open.load(Relaxed) > 0
    }

    /// Taps open now.
    pub fn count(&self) -> usize {
        self.open.load(Relaxed)
    }

    fn tags(&self, kind: Kind) -> &[String] {
        match kind {
            Kind::Input => &self.inputs,
            Kind::Analyzer => &self.analyzers,
            Kind::Output => &self.outputs,
        }
    }

    /// The stages `stage` names: `KIND:TAG` (`analyzer:dns`), `KIND` (every stage of that
    /// kind) or a bare `TAG` (every stage with that tag). An error names what exists.
    pub fn resolve(&self, stage: &str) -> Result<Vec<(Kind, usize)>, String> {
        let kinds = [Kind::Input, Kind::Analyzer, Kind::Output];
        let found: Vec<(Kind, usize)> = match stage.split_once(':') {
            Some((k, tag)) => {
                let kind = Kind::parse(k).ok_or_else(|| {
                    format!("stage {stage:?}: {k:?} is not input, analyzer or output")
                })?;
                self.indices(kind, tag)
            }
            None => match Kind::parse(stage) {
                Some(kind) => (0..self.tags(kind).len()).map(|i| (kind, i)).collect(),
                None => kinds.iter().flat_map(|&k| self.indices(k, stage)).collect(),
            },
        };
        if found.is_empty() {
            let list = |k: Kind| self.tags(k).join(", ");
            return Err(format!(
                "stage {stage:?} names nothing in this pipeline (inputs: {}; analyzers: {}; outputs: {})",
                list(Kind::Input),
                list(Kind::Analyzer),
                list(Kind::Output)
            ));
        }
        Ok(found)
    }

    fn indices(&self, kind: Kind, tag: &str) -> Vec<(Kind, usize)> {
        self.tags(kind)
            .iter()
            .enumerate()
            .filter(|(_, t)| *t == tag)
            .map(|(i, _)| (kind, i))
            .collect()
    }

    /// Open a tap; refused at [`MAX_TAPS`].
    pub fn open(self: &Arc<Self>, req: Request) -> Result<Tap, String> {
        let mut subs = self.subs.locked();
        if subs.len() >= MAX_TAPS {
            return Err(format!("{MAX_TAPS} taps are open already"));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let id = self.next_id.fetch_add(1, Relaxed);
        let rate = f64::from(req.rate.clamp(1, MAX_RATE));
        subs.push(Sub {
            id,
            stages: req.stages,
            filters: req.filters,
            rate,
            // the first second's worth at once
            tokens: rate,
            last: Instant::now(),
            tx,
        });
        self.open.store(subs.len(), Relaxed);
        Ok(Tap {
            lines: rx,
            id,
            taps: self.clone(),
        })
    }

    fn remove(&self, id: u64) {
        let mut subs = self.subs.locked();
        subs.retain(|s| s.id != id);
        self.open.store(subs.len(), Relaxed);
    }

    /// Offer lines `from..` of a batch at a stage (an input's, an output's): each tap on the
    /// stage takes those that match while it has tokens.
    pub fn offer(&self, kind: Kind, index: usize, batch: &Batch, from: usize) {
        let mut subs = self.subs.locked();
        let tag = self.tags(kind).get(index).map_or("", String::as_str);
        for sub in subs.iter_mut().filter(|s| s.wants(kind, index)) {
            sub.refill();
            for line in (from..batch.len()).map(|i| batch.get(i)) {
                if sub.tokens < 1.0 {
                    break;
                }
                if sub.matches(line) {
                    sub.tokens -= 1.0;
                    self.send(sub, render(kind, tag, line));
                }
            }
        }
    }

    /// What each analyzer's taps may take from the next batch, for the runtime
    /// ([`dragonfly_lua::Runtime::set_taps`]): empty when no tap looks at an analyzer.
    pub fn analyzer_plans(&self) -> Vec<TapPlan> {
        let mut subs = self.subs.locked();
        let mut plans = Vec::new();
        for sub in subs.iter_mut() {
            let analyzers: Vec<usize> = if sub.stages.is_empty() {
                (0..self.analyzers.len()).collect()
            } else {
                sub.stages
                    .iter()
                    .filter(|(k, _)| *k == Kind::Analyzer)
                    .map(|&(_, i)| i)
                    .collect()
            };
            if analyzers.is_empty() {
                continue;
            }
            sub.refill();
            let budget = sub.tokens.floor() as u32;
            for analyzer in analyzers {
                plans.push(TapPlan {
                    analyzer,
                    id: sub.id,
                    budget,
                    filters: sub
                        .filters
                        .iter()
                        .map(|f| (f.path.clone(), f.value.clone()))
                        .collect(),
                });
            }
        }
        plans
    }

    /// An analyzer event the runtime took for tap `id` (its plan's filters passed in Lua; they
    /// are checked again on the encoded value, which is what the tap shows).
    pub fn taken(&self, id: u64, analyzer: usize, json: &[u8]) {
        let mut subs = self.subs.locked();
        let tag = self
            .tags(Kind::Analyzer)
            .get(analyzer)
            .map_or("", String::as_str);
        if let Some(sub) = subs.iter_mut().find(|s| s.id == id) {
            sub.refill();
            if sub.tokens >= 1.0 && sub.matches(json) {
                sub.tokens -= 1.0;
                self.send(sub, render(Kind::Analyzer, tag, json));
            }
        }
    }

    fn send(&self, sub: &Sub, line: String) {
        match sub.tx.try_send(line) {
            Ok(()) => {
                self.events.fetch_add(1, Relaxed);
            }
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Relaxed);
            }
            // the client went; its Tap's drop removes it
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// One tap line for an event at a stage (see the module docs), escaped ([`escape`]).
pub fn render(kind: Kind, tag: &str, event: &[u8]) -> String {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut s = format!(
        r#"{{"time":"{time}","stage":"{}","tag":{}"#,
        kind.name(),
        serde_json::Value::from(tag)
    );
    let trimmed = event.trim_ascii();
    if trimmed.len() > MAX_EVENT_BYTES {
        let head = String::from_utf8_lossy(&trimmed[..MAX_EVENT_BYTES]);
        s.push_str(&format!(
            r#","cut":{},"text":{}}}"#,
            trimmed.len(),
            serde_json::Value::from(head.as_ref())
        ));
    } else if serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_ok() {
        // valid JSON, so valid UTF-8
        s.push_str(r#","event":"#);
        s.push_str(std::str::from_utf8(trimmed).unwrap_or("null"));
        s.push('}');
    } else {
        let text = String::from_utf8_lossy(trimmed);
        s.push_str(&format!(
            r#","malformed":true,"text":{}}}"#,
            serde_json::Value::from(text.as_ref())
        ));
    }
    escape(&s)
}

/// Whether a terminal or a page could act on `c` or hide it: DEL and the C1 controls (some
/// terminals take U+009B as a CSI), zero-width characters, line and paragraph separators,
/// bidirectional embeddings, overrides and isolates, invisible operators, the BOM and the
/// interlinear annotation characters.
fn hazardous(c: char) -> bool {
    matches!(c,
        '\u{7f}'..='\u{9f}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}')
}

/// A JSON text made safe to print: every [`hazardous`] character as a `\uXXXX` escape (valid
/// JSON: outside strings a JSON text is ASCII, so they can only be inside one), and the
/// whitespace a line may hold between tokens (tab, CR, LF) as a space.
pub fn escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '\t' | '\r' | '\n' => out.push(' '),
            c if hazardous(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> FieldMatch {
        FieldMatch::parse(s).unwrap()
    }

    #[test]
    fn filters_match_strings_exactly_numbers_by_value_and_nothing_else() {
        let line = br#"{"event_type":"dns","dest_port":443,"dns":{"rrname":"a\"b.example","ok":true,"n":null,"l":[1]},"x":1.50}"#;
        assert!(m("event_type=dns").matches(line));
        assert!(!m("event_type=DNS").matches(line));
        assert!(!m("event_type=dn").matches(line));
        assert!(m("dest_port=443").matches(line));
        assert!(m("dest_port=443.0").matches(line));
        assert!(!m("dest_port=44").matches(line));
        assert!(m("x=1.5").matches(line));
        assert!(m("dns.rrname=a\"b.example").matches(line));
        assert!(m("dns.ok=true").matches(line));
        assert!(m("dns.n=null").matches(line));
        assert!(!m("dns.l=[1]").matches(line));
        assert!(!m("dns=x").matches(line));
        assert!(!m("missing=1").matches(line));
        assert!(!m("dns.rrname.deeper=1").matches(line));
        // a nested field of the same name is not the top-level one
        assert!(!m("rrname=a\"b.example").matches(line));
        for bad in [
            &b""[..],
            b"not json",
            b"{\"a\":",
            b"[1,2]",
            b"{\"a\"",
            b"\xff\xfe",
        ] {
            assert!(!m("a=1").matches(bad));
        }
        assert!(FieldMatch::parse("nofield").is_err());
        assert!(FieldMatch::parse("a..b=1").is_err());
        assert!(FieldMatch::parse("=1").is_err());
    }

    #[test]
    fn lines_are_json_and_carry_nothing_a_terminal_or_page_would_act_on() {
        // JSON escapes ESC; the C1 control and the rest come raw (valid in a JSON string)
        let hostile = "{\"q\":\"\\u001b[31mred\u{9b}2J\u{202e}gnp.exe\u{2028}x\u{200b}\"}";
        let line = render(Kind::Input, "eve", hostile.as_bytes());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["event"]["q"],
            "\u{1b}[31mred\u{9b}2J\u{202e}gnp.exe\u{2028}x\u{200b}"
        );
        assert!(
            !line.chars().any(|c| c.is_control() || hazardous(c)),
            "{line}"
        );
        // a line that is not JSON: text, escaped
        let bad = b"\x1b]0;owned\x07 not json \xff\r";
        let line = render(Kind::Input, "eve\u{202e}", bad);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["malformed"], true);
        assert!(v["text"].as_str().unwrap().contains("owned"));
        assert_eq!(v["tag"], "eve\u{202e}");
        assert!(
            !line.chars().any(|c| c.is_control() || hazardous(c)),
            "{line}"
        );
        // whitespace between tokens becomes a space
        let line = render(Kind::Output, "o", b"{\"a\":\t1,\r\"b\":2}");
        assert!(!line.contains('\r') && !line.contains('\t'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"]["b"], 2);
        // too big: cut, as text
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_EVENT_BYTES));
        let v: serde_json::Value =
            serde_json::from_str(&render(Kind::Output, "o", big.as_bytes())).unwrap();
        assert_eq!(v["cut"], big.len());
        assert_eq!(v["text"].as_str().unwrap().len(), MAX_EVENT_BYTES);
    }

    use proptest::prelude::*;

    fn scalar() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            any::<bool>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e6f64..1e6).prop_map(serde_json::Value::from),
            "[ -~\u{80}-\u{10ffff}]{0,12}".prop_map(serde_json::Value::from),
        ]
    }

    /// The value a filter must be given to match `v`, if any.
    fn text_of(v: &serde_json::Value) -> Option<String> {
        match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(_) | serde_json::Value::Array(_) => None,
            other => Some(other.to_string()),
        }
    }

    proptest! {
        /// Against serde_json's own lookup: a filter on a field's path matches exactly when
        /// the field's value is the filter's (strings exactly, numbers by value), in objects
        /// nested two deep, whatever else they hold; and any bytes at all never panic.
        #[test]
        fn filters_agree_with_a_parsed_lookup(
            fields in prop::collection::btree_map("[a-z]{1,3}", scalar(), 1..6),
            inner in prop::collection::btree_map("[a-z]{1,3}", scalar(), 1..6),
            other in scalar(),
            junk in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut obj: serde_json::Map<String, serde_json::Value> =
                fields.clone().into_iter().collect();
            obj.insert("in".into(), serde_json::Value::Object(inner.clone().into_iter().collect()));
            let line = serde_json::Value::Object(obj).to_string();
            let paths = fields.iter().map(|(k, v)| (vec![k.clone()], v))
                .chain(inner.iter().map(|(k, v)| (vec!["in".to_string(), k.clone()], v)));
            for (path, v) in paths {
                if path == ["in"] { continue; }
                if let Some(want) = text_of(v) {
                    let f = FieldMatch { path: path.clone(), value: want };
                    prop_assert!(f.matches(line.as_bytes()), "{path:?} {line}");
                }
                if let Some(o) = text_of(&other) {
                    let same = match (v, &other) {
                        (serde_json::Value::Number(a), serde_json::Value::Number(b)) => a.as_f64() == b.as_f64(),
                        (serde_json::Value::Number(a), serde_json::Value::String(b)) => b.parse::<f64>().ok() == a.as_f64(),
                        (a, b) => text_of(a) == text_of(b) && !matches!(a, serde_json::Value::Number(_)),
                    };
                    let f = FieldMatch { path: path.clone(), value: o.clone() };
                    prop_assert_eq!(f.matches(line.as_bytes()), same, "{:?}={} in {}", path, o, line);
                }
            }
            let f = FieldMatch { path: vec!["a".into()], value: "1".into() };
            let _ = f.matches(&junk);
        }
    }

    fn taps() -> Arc<Taps> {
        Arc::new(Taps::new(
            vec!["eve".into()],
            vec!["dns".into(), "eve".into()],
            vec!["alerts".into()],
        ))
    }

    #[test]
    fn stages_resolve_by_kind_and_tag_and_unknown_ones_name_what_exists() {
        let t = taps();
        assert_eq!(
            t.resolve("analyzer:dns").unwrap(),
            vec![(Kind::Analyzer, 0)]
        );
        assert_eq!(
            t.resolve("eve").unwrap(),
            vec![(Kind::Input, 0), (Kind::Analyzer, 1)]
        );
        assert_eq!(
            t.resolve("analyzer").unwrap(),
            vec![(Kind::Analyzer, 0), (Kind::Analyzer, 1)]
        );
        assert_eq!(t.resolve("output:alerts").unwrap(), vec![(Kind::Output, 0)]);
        let e = t.resolve("analyzer:dsn").unwrap_err();
        assert!(
            e.contains("\"analyzer:dsn\"") && e.contains("analyzers: dns, eve"),
            "{e}"
        );
        assert!(t.resolve("sink:alerts").unwrap_err().contains("not input"));
    }

    #[test]
    fn a_tap_takes_its_rate_and_its_matches_and_ends_when_dropped() {
        let t = taps();
        let mut tap = t
            .open(Request {
                stages: vec![(Kind::Input, 0)],
                filters: vec![m("event_type=dns")],
                rate: 5,
            })
            .unwrap();
        assert!(t.on());
        let mut lines = Batch::default();
        for i in 0..100 {
            let kind = if i % 2 == 0 { "dns" } else { "flow" };
            lines.push(format!("{{\"event_type\":\"{kind}\",\"i\":{i}}}").as_bytes());
        }
        t.offer(Kind::Input, 0, &lines, 0);
        // not its stage
        t.offer(Kind::Output, 0, &lines, 0);
        let mut got = Vec::new();
        while let Ok(l) = tap.lines.try_recv() {
            got.push(serde_json::from_str::<serde_json::Value>(&l).unwrap());
        }
        assert_eq!(got.len(), 5, "one second's worth");
        assert!(got
            .iter()
            .all(|v| v["event"]["event_type"] == "dns" && v["stage"] == "input"));
        assert_eq!(got[4]["event"]["i"], 8);
        // a full queue drops and counts
        let mut slow = t
            .open(Request {
                stages: vec![],
                filters: vec![],
                rate: MAX_RATE,
            })
            .unwrap();
        t.offer(Kind::Output, 0, &lines, 0);
        t.offer(Kind::Output, 0, &lines, 0);
        t.offer(Kind::Output, 0, &lines, 0);
        assert!(t.dropped.load(Relaxed) > 0);
        assert!(slow
            .lines
            .try_recv()
            .unwrap()
            .contains("\"stage\":\"output\""));
        drop(tap);
        drop(slow);
        assert!(!t.on());
        let many: Vec<Tap> = (0..MAX_TAPS)
            .map(|_| {
                t.open(Request {
                    stages: vec![],
                    filters: vec![],
                    rate: 1,
                })
                .unwrap()
            })
            .collect();
        assert!(t
            .open(Request {
                stages: vec![],
                filters: vec![],
                rate: 1
            })
            .is_err());
        drop(many);
        assert_eq!(t.count(), 0);
    }
}
