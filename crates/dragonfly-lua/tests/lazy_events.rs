//! Lazy events against eager ones: the same lines and the same scripts give the same outputs
//! (as JSON values; field order aside where the eager path has none) and the same malformed
//! lines, whatever the events hold and whatever the scripts do to them.

use dragonfly_lua::{Runtime, RuntimeSpec, ScriptSpec};
use proptest::prelude::*;
use serde_json::Value as J;

/// Shown as `<tag>.lua`, writing to "out" by default.
fn script(spec: ScriptSpec) -> ScriptSpec {
    let display = format!("{}.lua", spec.tag);
    spec.display(&display).default_output("out")
}

/// Helpers every generated script starts with: get/set along a path, never raising.
const PRELUDE: &str = r#"
local function get(t, p)
  for i = 1, #p do
    if type(t) ~= "table" then return nil end
    t = t[p[i]]
  end
  return t
end
local function set(t, p, v)
  for i = 1, #p - 1 do
    t = t[p[i]]
    if type(t) ~= "table" then return end
  end
  if type(t) == "table" then t[p[#p]] = v end
end
local function append(t, p, v)
  t = get(t, p)
  if type(t) == "table" and getmetatable(t) == cjson.array_mt then table.insert(t, v) end
end
"#;

fn runtime(lazy: bool, filter: String, a1: String, a2: String) -> Runtime {
    RuntimeSpec::builder()
        .script(script(ScriptSpec::filter("in", filter)))
        .script(script(ScriptSpec::analyzer("a1", a1)))
        .script(script(ScriptSpec::analyzer("a2", a2)))
        .output("out")
        .lazy_events(lazy)
        .ready()
        .map_err(|e| format!("{e:?}"))
        .unwrap()
}

/// Numbers as doubles (the eager path prints `1.0` as `1`, the lazy one keeps `1.0`), and the
/// `enc` fields (cjson.encode output) parsed.
fn normal(v: J) -> J {
    match v {
        // to the 14 significant digits the eager path prints
        J::Number(n) => {
            let f: f64 = format!("{:.13e}", n.as_f64().unwrap()).parse().unwrap();
            serde_json::Number::from_f64(f)
                .map(J::Number)
                .unwrap_or(J::Null)
        }
        J::Array(a) => J::Array(a.into_iter().map(normal).collect()),
        J::Object(o) => J::Object(
            o.into_iter()
                .map(|(k, v)| match (k.as_str(), v) {
                    ("enc", J::String(s)) => {
                        let inner = serde_json::from_str(&s).unwrap_or(J::String(s));
                        (k, normal(inner))
                    }
                    (_, v) => (k, normal(v)),
                })
                .collect(),
        ),
        other => other,
    }
}

struct Run {
    outputs: Vec<J>,
    raw: Vec<Vec<u8>>,
    malformed: Vec<usize>,
    failures: Vec<String>,
}

fn run(lazy: bool, scripts: &(String, String, String), lines: &[Vec<u8>]) -> Run {
    let mut rt = runtime(
        lazy,
        scripts.0.clone(),
        scripts.1.clone(),
        scripts.2.clone(),
    );
    let mut b = dragonfly_event::Batch::default();
    for l in lines {
        b.push(l);
    }
    let res = rt.run_batch(0, &b).unwrap();
    let out = rt.take_output(0);
    Run {
        outputs: out
            .iter()
            .map(|l| match serde_json::from_slice(l) {
                Ok(v) => normal(v),
                // serde_json stops at 128 levels: compare such lines as text
                Err(e) if e.to_string().contains("recursion limit") => {
                    J::String(String::from_utf8_lossy(l).into_owned())
                }
                Err(e) => panic!("lazy={lazy}: {e}: {}", String::from_utf8_lossy(l)),
            })
            .collect(),
        raw: out.iter().map(|l| l.to_vec()).collect(),
        malformed: res.malformed.iter().map(|m| m.0).collect(),
        failures: rt
            .take_failures()
            .into_iter()
            .map(|f| {
                // a table that contains itself fails at a depth that depends on how much
                // stack each level takes: the message is the same up to that number
                let m = f.error.message;
                match m.find("excessive nesting (") {
                    Some(i) => format!("{}excessive nesting (N)", &m[..i]),
                    None => m,
                }
            })
            .collect(),
    }
}

// ---- generated events ----

#[derive(Debug, Clone)]
enum Node {
    Null,
    Bool(bool),
    Num(&'static str),
    Str(&'static str),
    Arr(Vec<Node>),
    Obj(Vec<(&'static str, Node)>),
}

const KEYS: &[&str] = &["a", "b", "c", "flow_id", "event_type", "x y", "é", "n"];
const NUMS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-12",
    "1.0",
    "1.5",
    "2.50",
    "1e3",
    "1E-2",
    "-0.0",
    "1251312473193421",
    "18446744073709551616",
    "123456789012345678901234567890",
    "0.1234567890123456789",
    "-0e5",
    "-1e-400",
    "1e-400",
];
const STRS: &[&str] = &[
    r#""""#,
    r#""x""#,
    r#""10.0.0.1""#,
    r#""a\"b""#,
    r#""line\nbreak""#,
    r#""\u00e9t\u00e9""#,
    r#""\/slash""#,
    r#""tab\there""#,
    r#""ü""#,
    r#""\ud83d\ude00""#,
];

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        Just(Node::Null),
        any::<bool>().prop_map(Node::Bool),
        prop::sample::select(NUMS).prop_map(Node::Num),
        prop::sample::select(STRS).prop_map(Node::Str),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Node::Arr),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..5).prop_map(Node::Obj),
        ]
    })
}

/// A top-level object; `dups` lets keys repeat (such objects are decoded eagerly).
fn event() -> impl Strategy<Value = (Vec<(&'static str, Node)>, bool, bool)> {
    (
        prop::collection::vec((prop::sample::select(KEYS), node()), 0..8),
        any::<bool>(),
        any::<bool>(),
    )
}

fn render(n: &Node, spaced: bool, out: &mut String) {
    let (colon, comma) = if spaced { (" : ", " , ") } else { (":", ",") };
    match n {
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Num(s) | Node::Str(s) => out.push_str(s),
        Node::Arr(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(comma);
                }
                render(x, spaced, out);
            }
            out.push(']');
        }
        Node::Obj(o) => {
            out.push('{');
            let mut seen = Vec::new();
            for (k, x) in o {
                if seen.contains(k) {
                    continue; // nested objects keep unique keys
                }
                if !seen.is_empty() {
                    out.push_str(comma);
                }
                seen.push(k);
                out.push_str(&format!("\"{k}\"{colon}"));
                render(x, spaced, out);
            }
            out.push('}');
        }
    }
}

fn render_event(fields: &[(&'static str, Node)], dups: bool, spaced: bool) -> String {
    let mut out = String::from(if spaced { " { " } else { "{" });
    let mut seen = Vec::new();
    for (k, x) in fields {
        if !dups && seen.contains(k) {
            continue;
        }
        if !seen.is_empty() {
            out.push(',');
        }
        seen.push(k);
        out.push_str(&format!("\"{k}\":"));
        render(x, spaced, &mut out);
    }
    out.push('}');
    out
}

// ---- generated edits ----

#[derive(Debug, Clone)]
enum Op {
    Read(Vec<String>),
    Set(Vec<String>, &'static str),
    Append(Vec<String>, &'static str),
    Pairs,
    PairsAt(Vec<String>),
    RawSet(String, &'static str),
    RawGet(String),
    SetMetatable,
    Encode,
    EditKept(Vec<String>, &'static str),
}

const VALUES: &[&str] = &[
    "nil",
    "cjson.null",
    "1",
    "1.5",
    "-0",
    "2^53",
    "'s'",
    "'10.0.0.1'",
    "true",
    "false",
    "{}",
    "{x = 1, y = {2, 3}}",
    "setmetatable({}, cjson.array_mt)",
    "{1, 'two', {three = 3}}",
    "get(msg, {'a'})",
    "get(msg, {'b', 'c'})",
];

fn path() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(KEYS).prop_map(|k| format!("{k:?}")),
            1 => (1usize..4).prop_map(|i| i.to_string()),
            1 => Just("'new'".to_string()),
        ],
        1..4,
    )
}

fn op() -> impl Strategy<Value = Op> {
    let v = || prop::sample::select(VALUES);
    prop_oneof![
        3 => path().prop_map(Op::Read),
        4 => (path(), v()).prop_map(|(p, v)| Op::Set(p, v)),
        1 => (path(), v()).prop_map(|(p, v)| Op::Append(p, v)),
        1 => Just(Op::Pairs),
        1 => path().prop_map(Op::PairsAt),
        1 => (prop::sample::select(KEYS), v()).prop_map(|(k, v)| Op::RawSet(format!("{k:?}"), v)),
        1 => prop::sample::select(KEYS).prop_map(|k| Op::RawGet(format!("{k:?}"))),
        1 => Just(Op::SetMetatable),
        1 => Just(Op::Encode),
        1 => (path(), v()).prop_map(|(p, v)| Op::EditKept(p, v)),
    ]
}

fn lua_ops(ops: &[Op]) -> String {
    let p = |p: &[String]| format!("{{{}}}", p.join(", "));
    let mut s = String::new();
    for op in ops {
        s.push_str(&match op {
            Op::Read(path) => format!("sink = get(msg, {})\n", p(path)),
            Op::Set(path, v) => format!("set(msg, {}, {v})\n", p(path)),
            Op::Append(path, v) => format!("append(msg, {}, {v})\n", p(path)),
            Op::Pairs => "for k, v in pairs(msg) do sink = k end\n".into(),
            Op::PairsAt(path) => format!(
                "do local t = get(msg, {}) if type(t) == 'table' then for k, v in pairs(t) do sink = v end end end\n",
                p(path)
            ),
            Op::RawSet(k, v) => format!("rawset(msg, {k}, {v})\n"),
            Op::RawGet(k) => format!("sink = rawget(msg, {k})\n"),
            Op::SetMetatable => "setmetatable(msg, nil)\n".into(),
            Op::Encode => "dragonfly.output_event('out', { enc = cjson.encode(msg) })\n".into(),
            Op::EditKept(path, v) => format!(
                "if kept then set(kept, {}, {v}) dragonfly.output_event('out', kept) end\n",
                p(path)
            ),
        });
    }
    s
}

/// The filter edits, hands the event to a1 and a2, then edits its own copy and outputs it;
/// a1 edits its copy and outputs it, keeping it for the next call (EditKept changes a kept
/// event later); a2 outputs what it received.
fn scripts(ops: &[Vec<Op>; 3]) -> (String, String, String) {
    let filter = format!(
        "{PRELUDE}\nfunction loop(msg)\n{}\ndragonfly.analyze_event('a1', msg)\ndragonfly.analyze_event('a2', msg)\n{}\ndragonfly.output_event('out', msg)\nend",
        lua_ops(&ops[0]),
        lua_ops(&ops[1]),
    );
    let a1 = format!(
        "{PRELUDE}\nfunction loop(msg)\n{}\ndragonfly.output_event('out', msg)\nkept = msg\nend",
        lua_ops(&ops[2]),
    );
    let a2 = "function loop(msg) dragonfly.output_event('out', msg) end".to_string();
    (filter, a1, a2)
}

fn check(scripts: &(String, String, String), lines: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let lazy = run(true, scripts, lines);
    let eager = run(false, scripts, lines);
    prop_assert_eq!(&lazy.malformed, &eager.malformed);
    prop_assert_eq!(&lazy.failures, &eager.failures);
    prop_assert_eq!(lazy.outputs.len(), eager.outputs.len());
    for (i, (l, e)) in lazy.outputs.iter().zip(&eager.outputs).enumerate() {
        prop_assert_eq!(
            l,
            e,
            "output {}: lazy {} eager {}\nscripts:\n{}\n{}",
            i,
            String::from_utf8_lossy(&lazy.raw[i]),
            String::from_utf8_lossy(&eager.raw[i]),
            scripts.0,
            scripts.1
        );
    }
    // deterministic: the same run again gives the same bytes
    let again = run(true, scripts, lines);
    prop_assert_eq!(&again.raw, &lazy.raw);
    // the encoder's shortcut to remembered fields gives the bytes the full walk gives
    dragonfly_lua::encode_walking_every_field(true);
    let walked = run(true, scripts, lines);
    dragonfly_lua::encode_walking_every_field(false);
    prop_assert_eq!(&walked.raw, &lazy.raw);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(150),
        ..ProptestConfig::default()
    })]

    /// Random events through random edits: lazy and eager outputs are equal.
    #[test]
    fn lazy_and_eager_events_give_the_same_outputs(
        events in prop::collection::vec(event(), 1..4),
        ops in [
            prop::collection::vec(op(), 0..6),
            prop::collection::vec(op(), 0..4),
            prop::collection::vec(op(), 0..6),
        ],
    ) {
        let lines: Vec<Vec<u8>> = events
            .iter()
            .map(|(f, dups, spaced)| render_event(f, *dups, *spaced).into_bytes())
            .collect();
        check(&scripts(&ops), &lines)?;
    }

    /// Whatever a line holds, the lazy path refuses exactly the lines the eager one refuses.
    #[test]
    fn lazy_and_eager_refuse_the_same_lines(lines in prop::collection::vec(line(), 1..6)) {
        let pass = "function loop(msg) dragonfly.output_event('out', msg) end".to_string();
        check(&(pass.clone(), pass.clone(), pass), &lines)?;
    }
}

/// Lines near JSON: valid events with one byte changed, inserted or removed, random bytes,
/// numbers and strings at the edges, nesting around the limit.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let valid = || event().prop_map(|(f, d, s)| render_event(&f, d, s).into_bytes());
    prop_oneof![
        valid(),
        (valid(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(mut l, i, b)| {
            if !l.is_empty() {
                let i = i.index(l.len());
                l[i] = b;
            }
            l
        }),
        (
            valid(),
            any::<prop::sample::Index>(),
            prop::sample::select(&b"{}[]\",:\\ 0-.eE\x01\xff"[..])
        )
            .prop_map(|(mut l, i, b)| {
                let i = i.index(l.len() + 1);
                l.insert(i, b);
                l
            }),
        (valid(), any::<prop::sample::Index>()).prop_map(|(mut l, i)| {
            if !l.is_empty() {
                l.remove(i.index(l.len()));
            }
            l
        }),
        prop::collection::vec(any::<u8>(), 0..40),
        (250usize..260).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()),
        (250usize..260)
            .prop_map(|d| format!("{}1{}", "{\"a\":".repeat(d), "}".repeat(d)).into_bytes()),
        prop::sample::select(vec![
            "{\"n\":1e308}",
            "{\"n\":1e309}",
            "{\"n\":-1e309}",
            "{\"n\":1e-400}",
            "{\"n\":01}",
            "{\"n\":1.}",
            "{\"n\":.5}",
            "{\"n\":-}",
            "{\"n\":1e}",
            "{\"s\":\"\\ud800\"}",
            "{\"s\":\"\\ud800\\udc00\"}",
            "{\"s\":\"\\udc00\"}",
            "{\"s\":\"\\u00zz\"}",
            "{\"s\":\"\x7f\"}",
            "{\"s\":\"\x01\"}",
            "{\"\\u0061\":1,\"a\":2}",
            "{\"a\":1,\"a\":2}",
            "[1,2]",
            "\"str\"",
            "12",
            "null",
            "{} ",
            " {}",
            "{}x",
            "{\"a\":1}\n",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ]
}

#[test]
fn unchanged_events_come_out_as_their_bytes() {
    let pass = "function loop(msg) dragonfly.output_event('out', msg) end".to_string();
    let line = br#"{"timestamp":"2025-03-10T10:00:00.000000+0000","flow_id":1251312473193421,"big":18446744073709551616,"f":1.50,"nested":{ "z":1, "a":[1.0, 2] },"event_type":"dns"}"#;
    let r = run(true, &(pass.clone(), pass.clone(), pass), &[line.to_vec()]);
    assert_eq!(r.raw, [[&line[..], b"\n"].concat()]);
}

#[test]
fn changed_events_keep_field_order_and_number_text() {
    let filter = r#"function loop(msg)
        local t = msg.event_type          -- read only
        local a = msg.nested.a            -- an array read, unchanged
        msg.f = nil                       -- deleted
        msg.nested.z = 2                  -- nested change, in place
        msg.added = "x"                   -- appended
        msg.more = { k = 1 }
        msg.timestamp = msg.timestamp     -- same value: bytes kept
        dragonfly.output_event('out', msg)
    end"#
        .to_string();
    let line = br#"{"timestamp":"2025-03-10T10:00:00.000000+0000","flow_id":1251312473193421,"big":18446744073709551616,"f":1.50,"nested":{ "z":1, "a":[1.0, 2] },"event_type":"dns"}"#;
    let none = "function loop(msg) end".to_string();
    let r = run(true, &(filter, none.clone(), none), &[line.to_vec()]);
    assert_eq!(
        String::from_utf8_lossy(&r.raw[0]),
        r#"{"timestamp":"2025-03-10T10:00:00.000000+0000","flow_id":1251312473193421,"big":18446744073709551616,"nested":{ "z":2, "a":[1.0, 2] },"event_type":"dns","added":"x","more":{"k":1}}
"#
    );
}

/// Numbers read from the bytes are the values the eager decoder gives, sign of zero included.
#[test]
fn numbers_read_are_the_eager_values() {
    let filter = r#"function loop(msg)
        local t = {}
        for _, k in ipairs({"a", "b", "c", "d", "e", "f", "g", "h"}) do t[#t + 1] = string.format("%.17g", msg[k]) end
        dragonfly.output_event('out', { r = table.concat(t, " ") })
    end"#
        .to_string();
    let none = "function loop(msg) end".to_string();
    let line = br#"{"a":-0,"b":-0.0,"c":-0e5,"d":-1e-400,"e":18446744073709551617,"f":1.5e300,"g":0.1,"h":-12}"#;
    let s = (filter, none.clone(), none);
    let lazy = run(true, &s, &[line.to_vec()]);
    let eager = run(false, &s, &[line.to_vec()]);
    assert_eq!(
        lazy.raw,
        eager.raw,
        "{}",
        String::from_utf8_lossy(&lazy.raw[0])
    );
}

#[test]
fn scripts_see_a_plain_table() {
    let filter = r#"function loop(msg)
        local n = 0
        for k, v in pairs(msg) do n = n + 1 end
        local keys = {}
        local k = next(msg)
        msg.r = table.concat({
          type(msg), tostring(getmetatable(msg)), tostring(n), tostring(#msg),
          tostring(rawget(msg, "a")), tostring(#msg.arr), tostring(#msg.o.arr),
          tostring(msg.missing), tostring(k ~= nil), tostring(msg.n == cjson.null),
        }, ",")
        msg[1] = "one"
        dragonfly.output_event('out', msg)
    end"#
        .to_string();
    let none = "function loop(msg) end".to_string();
    let r = run(
        true,
        &(filter, none.clone(), none),
        &[br#"{"a":1,"arr":[1,2,3],"o":{"arr":[]},"n":null}"#.to_vec()],
    );
    assert_eq!(
        String::from_utf8_lossy(&r.raw[0]),
        r#"{"a":1,"arr":[1,2,3],"o":{"arr":[]},"n":null,"r":"table,nil,4,0,1,3,0,nil,true,true","1":"one"}
"#
    );
}

/// Fields past the 64th keep their marks in a table instead of the mask.
#[test]
fn events_with_many_fields() {
    let fields: Vec<String> = (0..100).map(|i| format!("\"f{i}\":{i}.50")).collect();
    let line = format!("{{{}}}", fields.join(",")).into_bytes();
    for body in [
        "local x = msg.f70 msg.f80 = 'eighty' msg.f90 = nil msg.f3 = nil",
        "msg.f99 = nil msg.new = 1 local n = 0 for k in pairs(msg) do n = n + 1 end msg.count = n",
        "rawset(msg, 'f65', nil) msg.f66 = msg.f66 msg.f64 = { 1 }",
        // lookups in every order, misses first and again, past the placed fields (lazy.rs
        // PLACES) and back
        "local s = {} for _, i in ipairs({ 'nope', 30, 2, 23, 24, 25, 0, 99, 12, 26, 1, 'nope', \
         23, 70, 24 }) do s[#s + 1] = tostring(msg['f' .. i]) end msg.seen = table.concat(s, ',')",
    ] {
        let filter = format!("function loop(msg) {body} dragonfly.analyze_event('a1', msg) end");
        let a1 =
            "function loop(msg) msg.f75 = nil dragonfly.output_event('out', msg) end".to_string();
        let a2 = "function loop(msg) end".to_string();
        check(&(filter, a1, a2), std::slice::from_ref(&line)).unwrap();
    }
    let filter = "function loop(msg) local s = {} for _, i in ipairs({ 'x', 30, 2, 23, 24, 25, 99, 'x', 24 }) \
         do s[#s + 1] = tostring(msg['f' .. i]) end dragonfly.output_event('out', s) end"
        .to_string();
    let none = "function loop(msg) end".to_string();
    let r = run(
        true,
        &(filter, none.clone(), none),
        std::slice::from_ref(&line),
    );
    assert_eq!(
        String::from_utf8_lossy(&r.raw[0]),
        "[\"nil\",\"30.5\",\"2.5\",\"23.5\",\"24.5\",\"25.5\",\"99.5\",\"nil\",\"24.5\"]\n"
    );
    // an object too long to place (over 64 KiB) is walked, with the same answers
    let big = format!(
        "{{\"pad\":\"{}\",{}}}",
        "x".repeat(70_000),
        (0..30)
            .map(|i| format!("\"g{i}\":{i}"))
            .collect::<Vec<_>>()
            .join(",")
    )
    .into_bytes();
    let filter = "function loop(msg) msg.seen = tostring(msg.g20) .. tostring(msg.g3) .. \
                  tostring(msg.nope) .. tostring(msg.g29) .. tostring(msg.g20) \
                  dragonfly.analyze_event('a1', msg) end"
        .to_string();
    let a1 =
        "function loop(msg) msg.pad = #msg.pad dragonfly.output_event('out', msg) end".to_string();
    let a2 = "function loop(msg) end".to_string();
    check(&(filter, a1, a2), std::slice::from_ref(&big)).unwrap();
    // untouched fields past the 64th keep their text
    let filter =
        "function loop(msg) msg.f80 = 1 dragonfly.output_event('out', msg) end".to_string();
    let none = "function loop(msg) end".to_string();
    let r = run(true, &(filter, none.clone(), none), &[line]);
    let out = String::from_utf8_lossy(&r.raw[0]).into_owned();
    assert!(
        out.contains("\"f79\":79.50,\"f80\":1,\"f81\":81.50"),
        "{out}"
    );
}

/// A hand-off shares the sender's state until one side changes it: neither side sees the
/// other's later reads, writes, deletions or new keys.
#[test]
fn senders_and_receivers_stay_apart() {
    let filter = r#"function loop(msg)
        msg.a = 1
        dragonfly.analyze_event('a1', msg)
        dragonfly.analyze_event('a2', msg)
        msg.b = 2
        msg.c = nil
        local t = msg.t
        msg.z.y = 'sender'
        dragonfly.output_event('out', msg)
    end"#
        .to_string();
    let a1 = r#"function loop(msg)
        msg.d = 4
        msg.t = nil
        msg.z.x = 'a1'
        dragonfly.output_event('out', msg)
    end"#
        .to_string();
    let a2 = "function loop(msg) dragonfly.output_event('out', msg) end".to_string();
    let line = br#"{"t":"x","c":3,"z":{"k":1}}"#;
    let r = run(true, &(filter, a1, a2), &[line.to_vec()]);
    let text: Vec<String> = r
        .raw
        .iter()
        .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
        .collect();
    assert_eq!(
        text,
        [
            r#"{"t":"x","z":{"k":1,"y":"sender"},"a":1,"b":2}"#,
            r#"{"c":3,"z":{"k":1,"x":"a1"},"a":1,"d":4}"#,
            r#"{"t":"x","c":3,"z":{"k":1},"a":1}"#,
        ]
    );
}

/// A kept event handed off again and again, its receivers reading a field and adding a key,
/// with collections in between (so a new receiver may take a collected one's address): every
/// receiver sees the event as kept, never what an earlier receiver did to its own copy.
#[test]
fn receivers_never_inherit_a_collected_receivers_view() {
    let filter = r#"function loop(msg)
        if kept == nil then kept = msg return end
        n = (n or 0) + 1
        dragonfly.analyze_event('a1', kept)
        if n % 3 == 0 then collectgarbage() end
    end"#
        .to_string();
    let a1 = r#"function loop(msg)
        count = (count or 0) + 1
        local b = msg.b
        msg['k' .. count] = b
        dragonfly.output_event('out', msg)
    end"#
        .to_string();
    let a2 = "function loop(msg) end".to_string();
    let lines: Vec<Vec<u8>> = (0..400)
        .map(|i| format!(r#"{{"a":{i},"b":"x","c":[1,2]}}"#).into_bytes())
        .collect();
    let r = run(true, &(filter, a1, a2), &lines);
    assert_eq!(r.raw.len(), 399);
    for (i, l) in r.raw.iter().enumerate() {
        let text = String::from_utf8_lossy(l).trim_end().to_string();
        assert_eq!(
            text,
            format!(r#"{{"a":0,"b":"x","c":[1,2],"k{}":"x"}}"#, i + 1)
        );
    }
}
