//! The script-facing libraries, exercised from Lua.

use dragonfly_lua::{Backend, Runtime, RuntimeSpec, ScriptSpec};
use proptest::prelude::*;

fn runtime() -> Runtime {
    RuntimeSpec::builder()
        .output("out")
        .build()
        .map_err(|e| format!("{e:?}"))
        .unwrap()
}

fn eval<T: mlua::FromLuaMulti>(rt: &Runtime, code: &str) -> T {
    rt.lua()
        .load(code)
        .eval()
        .unwrap_or_else(|e| panic!("{code}: {e}"))
}

#[test]
fn cjson_round_trips_with_the_originals_number_format() {
    let rt = runtime();
    let s: String = eval(&rt, r#"return cjson_safe.encode({a = 1/3})"#);
    assert_eq!(s, r#"{"a":0.33333333333333}"#);
    let s: String = eval(
        &rt,
        r#"return cjson.encode(cjson.decode('{"id":1251312473193421,"arr":[],"o":{},"n":null}'))"#,
    );
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"id": 1251312473193421u64, "arr": [], "o": {}, "n": null})
    );
    let (v, err): (mlua::Value, String) = eval(&rt, r#"return cjson_safe.decode('{bad')"#);
    assert!(v.is_nil() && err.contains("invalid JSON"), "{err}");
    let (v, err): (mlua::Value, String) = eval(&rt, r#"return cjson.encode({f = function() end})"#);
    assert!(v.is_nil() && err.contains("type not supported"), "{err}");
    let (v, err): (mlua::Value, String) = eval(&rt, r#"return cjson.encode({[1]=1, [100]=2})"#);
    assert!(
        v.is_nil() && err.contains("excessively sparse array"),
        "{err}"
    );
    let s: String = eval(&rt, r#"return cjson.encode({[1]="a", [3]="c"})"#);
    assert_eq!(s, r#"["a",null,"c"]"#);
    let (v, err): (mlua::Value, String) = eval(&rt, r#"return cjson.encode({x = 0/0})"#);
    assert!(v.is_nil() && err.contains("NaN"), "{err}");
    // a table passes through decode (scripts written for string messages)
    let b: bool = eval(&rt, r#"local t = {x=1}; return cjson.decode(t) == t"#);
    assert!(b);
    let s: String = eval(&rt, r#"return cjson.encode("quote\" slash/ nl\n ctl\1")"#);
    assert_eq!(s, r#""quote\" slash/ nl\n ctl\u0001""#);
}

#[test]
fn hiredis_replies_compare_like_lua_hiredis() {
    let rt = runtime();
    let ok: bool = eval(
        &rt,
        r#"
        local conn = hiredis.connect()
        assert(conn:command("PING") == hiredis.status.PONG)
        assert(conn:command("SET", "k", 5) == hiredis.OK)
        assert(conn:command("GET", "nope") == hiredis.NIL)
        assert(conn:command("INCR", "k") == 6)
        assert(conn:command_line("INCRBY k 4") == 10)
        assert(conn:command("GET", "k") == "10")
        local e = conn:command("INCR")
        assert(type(e) == "table" and e.type == hiredis.REPLY_ERROR, tostring(e))
        assert(e.name == "ERR wrong number of arguments for 'incr' command", e.name)
        assert(e.name ~= 'OK')
        assert(tostring(hiredis.OK) == "OK")
        local name, t = hiredis.unwrap_reply(hiredis.OK)
        assert(name == "OK" and t == hiredis.REPLY_STATUS)
        local n, err = hiredis.unwrap_reply(e)
        assert(n == nil and err == e.name)
        assert(hiredis.unwrap_reply(5) == 5)
        conn:append_command("INCR", "p")
        conn:append_command("INCR", "p")
        assert(conn:get_reply() == 1 and conn:get_reply() == 2)
        -- numbers are sent the way Lua prints them
        conn:command("SET", "f", 0.5)
        assert(conn:command("GET", "f") == "0.5")
        conn:close()
        assert(not pcall(function() return conn:command("PING") end))
        return true
    "#,
    );
    assert!(ok);
}

/// The connection's methods are C functions on the raw API (libs/hiredis/conn.rs): every
/// reply shape, the scheduler's entry points, and each misuse raising a message that says what
/// was wrong.
#[test]
fn hiredis_connection_methods_convert_and_refuse_like_lua_hiredis() {
    let rt = runtime();
    let ok: bool = eval(
        &rt,
        r#"
        local conn = hiredis.connect()
        local ud = conn[1]
        assert(tostring(ud) == "lua-hiredis.connection")
        assert(getmetatable(ud) == "lua-hiredis.connection")
        -- arrays, nested, with nil and integer members
        conn:command("RPUSH", "l", "a", 2, 0.25)
        local r = conn:command("LRANGE", "l", 0, -1)
        assert(#r == 3 and r[1] == "a" and r[2] == "2" and r[3] == "0.25")
        conn:command("HSET", "h", "f", "v")
        local m = conn:command("HMGET", "h", "f", "nope")
        assert(m[1] == "v" and m[2] == hiredis.NIL)
        local s = conn:command("SCAN", 0)
        assert(type(s) == "table" and s[1] == "0" and type(s[2]) == "table")
        assert(conn:command("TYPE", "l") == hiredis.status.list)
        -- binary-safe both ways
        conn:command("SET", "b", "a\0b\255")
        assert(conn:command("GET", "b") == "a\0b\255")
        assert(conn:command_line("SET n 7") == hiredis.OK and conn:command("GET", "n") == "7")
        -- the scheduler's entry points on a store that answers at once
        assert(ud:_submit("PING") == nil and ud:_submit_line("PING") == nil)
        ud:_flush()
        local _, e = pcall(ud._await, ud, "x")
        assert(tostring(e):find("ticket expected", 1, true), tostring(e))
        assert(ud:_await(3).type == hiredis.REPLY_ERROR)
        -- misuse
        local function err(f, ...)
          local ok, e = pcall(f, ...)
          assert(not ok)
          return tostring(e)
        end
        e = err(ud.command, ud, "SET", "k", {})
        assert(e == "bad argument #3 to 'command' (expected a string or number value, got table)", e)
        e = err(ud.command, ud)
        assert(e == "missing command name", e)
        e = err(ud.command_line, ud, "   ")
        assert(e == "missing command name", e)
        e = err(ud.command_line, ud, nil)
        assert(e:find("bad argument #1 to 'command_line'", 1, true), e)
        e = err(ud.command, "PING")
        assert(e:find("lua-hiredis.connection expected, got string", 1, true), e)
        e = err(ud.command, {}, "PING")
        assert(e:find("lua-hiredis.connection expected, got table", 1, true), e)
        e = err(ud.get_reply, io or {})
        assert(e:find("bad argument #1 to 'get_reply'", 1, true), e)
        local none, msg, code = conn:get_reply()
        assert(none == nil and msg:find("no reply pending", 1, true) and code == 2)
        conn:close()
        e = err(ud.command, ud, "PING")
        assert(e == "lua-hiredis error: attempted to use closed connection", e)
        e = err(ud.append_command, ud, "PING")
        assert(e:find("closed connection", 1, true), e)
        -- a dropped connection is collected (its __gc closes it) without harm
        for _ = 1, 100 do hiredis.connect() end
        collectgarbage()
        collectgarbage()
        return true
    "#,
    );
    assert!(ok);
}

#[test]
fn connect_without_a_backend_returns_nil_and_a_reason() {
    let rt = RuntimeSpec::builder()
        .backend(Backend::Unavailable("no store here".into()))
        .build()
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    let (c, err, code): (mlua::Value, String, i64) = eval(&rt, "return hiredis.connect()");
    assert!(c.is_nil());
    assert_eq!((err.as_str(), code), ("no store here", 1));
}

#[test]
fn lua_51_semantics_hold() {
    let rt = runtime();
    let s: String = eval(
        &rt,
        r#"return tostring(8) .. " " .. table.getn({1,2}) .. " " .. select(2, unpack({1,2})) .. " " .. string.format('%.14g', 2/3)"#,
    );
    assert_eq!(s, "8 2 2 0.66666666666667");
    let e: i64 = eval(
        &rt,
        r#"return dragonfly.date2epoch("2026-11-27T21:53:04.123456+0000")"#,
    );
    assert_eq!(e, 1795816384);
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        (-(1i64 << 53)..(1i64 << 53)).prop_map(serde_json::Value::from),
        // doubles with at most 14 significant digits survive %.14g exactly
        (-1_000_000_000i64..1_000_000_000, 1u32..6)
            .prop_map(|(m, e)| { serde_json::Value::from(m as f64 / 10f64.powi(e as i32)) }),
        "[ -~\\n\\t\\u{e9}\\u{1F600}]{0,20}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON in -> Lua table -> JSON out is the same value (null, [] and integers included).
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || ((x - y) / x).abs() < 1e-13
        }
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
        // an array of nulls decodes to holes; cjson encodes trailing holes away
        (Object(x), Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn json_round_trips_through_lua(v in arb_json()) {
        // cjson's null inside arrays is a value (cjson.null), so arrays keep their length
        let rt = runtime();
        let text = serde_json::to_string(&v).unwrap();
        let mt = rt.lua().app_data_ref::<dragonfly_lua::libs::cjson::ArrayMt>().unwrap().0.clone();
        let lv = dragonfly_lua::json::decode(rt.lua(), &mt, text.as_bytes()).unwrap();
        let out = dragonfly_lua::json::encode_to_vec(rt.lua(), &lv).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        prop_assert!(same(&v, &back), "{} -> {}", text, String::from_utf8_lossy(&out));
    }
}

fn echo_runtime() -> Runtime {
    RuntimeSpec::builder()
        .script(
            ScriptSpec::filter(
                "in",
                "function loop(m) dragonfly.output_event('out', m) end",
            )
            .display("filter/echo.lua"),
        )
        .output("out")
        .ready()
        .map_err(|e| format!("{e:?}"))
        .unwrap()
}

#[test]
fn the_batch_path_marks_bad_lines_and_keeps_the_rest() {
    let mut rt = echo_runtime();
    let mut b = dragonfly_event::Batch::default();
    b.push(br#"{"a":1}"#);
    b.push(br#"{"a":"#);
    b.push(b"{\"bad\":\"\xff\xfe\"}");
    b.push(br#"[1,2,{"x":null}]"#);
    let res = rt.run_batch(0, &b).unwrap();
    assert_eq!(res.events, 2);
    let bad: Vec<usize> = res.malformed.iter().map(|(i, _)| *i).collect();
    assert_eq!(bad, vec![1, 2], "{:?}", res.malformed);
    let out = rt.take_output(0);
    let lines: Vec<&[u8]> = out.iter().collect();
    assert_eq!(lines, vec![&b"{\"a\":1}\n"[..], b"[1,2,{\"x\":null}]\n"]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// The hot path (batch decode on the raw Lua API, encode from the Lua stack) gives back
    /// the same JSON values.
    #[test]
    fn the_batch_path_round_trips(values in prop::collection::vec(arb_json(), 1..8)) {
        let mut rt = echo_runtime();
        let mut b = dragonfly_event::Batch::default();
        for v in &values {
            b.push(serde_json::to_string(v).unwrap().as_bytes());
        }
        let res = rt.run_batch(0, &b).unwrap();
        prop_assert_eq!(res.events, values.len());
        prop_assert!(res.malformed.is_empty());
        let out = rt.take_output(0);
        prop_assert_eq!(out.len(), values.len());
        for (line, v) in out.iter().zip(&values) {
            let back: serde_json::Value = serde_json::from_slice(line).unwrap();
            prop_assert!(same(v, &back), "{} -> {}", v, String::from_utf8_lossy(line));
        }
    }
}

/// A runtime whose one filter runs `body` in loop(msg) and writes msg to "out".
fn limited_runtime(body: &str, limits: dragonfly_lua::Limits) -> Runtime {
    RuntimeSpec::builder()
        .script(
            ScriptSpec::filter(
                "in",
                format!("function loop(msg) {body} dragonfly.output_event('out', msg) end"),
            )
            .display("filter/f.lua"),
        )
        .output("out")
        .limits(limits)
        .ready()
        .map_err(|e| format!("{e:?}"))
        .unwrap()
}

fn batch_of(lines: &[&str]) -> dragonfly_event::Batch {
    let mut b = dragonfly_event::Batch::default();
    for l in lines {
        b.push(l.as_bytes());
    }
    b
}

#[test]
fn out_of_memory_fails_one_call_and_the_runtime_recovers() {
    let mut rt = limited_runtime(
        "if msg.bomb then local t = {} local i = 0 while true do i = i + 1 t[i] = {i} end end",
        dragonfly_lua::Limits {
            memory: 32 << 20,
            script_timeout: std::time::Duration::ZERO,
            ..Default::default()
        },
    );
    // every event after the bomb in the same batch runs: the runtime collects the bomb's
    // garbage as soon as the failure is recorded, not at the end of the batch
    let lines = [
        r#"{"n":1}"#,
        r#"{"bomb":true}"#,
        r#"{"n":2}"#,
        r#"{"n":3}"#,
        r#"{"n":4}"#,
        r#"{"n":5}"#,
    ];
    for _ in 0..3 {
        let res = rt.run_batch(0, &batch_of(&lines)).unwrap();
        assert_eq!(res.events, 6);
        let f = rt.take_failures();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, dragonfly_lua::FailureKind::Memory);
        assert_eq!(f[0].input_index, Some(1));
        assert_eq!(
            f[0].event, r#"{"bomb":true}"#,
            "the failure quotes its event"
        );
        assert_eq!(rt.take_output(0).len(), 5);
        assert!(rt.used_memory() < 8 << 20, "{}", rt.used_memory());
    }
}

#[test]
fn an_interpreted_endless_loop_times_out_and_the_next_event_runs() {
    let mut rt = limited_runtime(
        "if msg.spin then while true do end end",
        dragonfly_lua::Limits {
            memory: 0,
            script_timeout: std::time::Duration::from_millis(100),
            ..Default::default()
        },
    );
    // scripts cannot reach `jit`; the engine's template can: an interpreted loop
    rt.lua().load("jit.off() jit.flush()").exec().unwrap();
    let t = std::time::Instant::now();
    let res = rt
        .run_batch(0, &batch_of(&[r#"{"spin":true}"#, r#"{"n":2}"#]))
        .unwrap();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(res.events, 2);
    let f = rt.take_failures();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].kind, dragonfly_lua::FailureKind::Timeout);
    assert!(f[0].error.message.contains("(100 ms)"), "{f:?}");
    assert_eq!(rt.take_output(0).len(), 1);
    // a normal call after it is not affected by the timed-out one
    rt.run_batch(0, &batch_of(&[r#"{"n":3}"#])).unwrap();
    assert!(rt.take_failures().is_empty());
}

#[test]
fn a_compiled_endless_loop_parks_its_thread_and_leaves_what_it_made() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rt = limited_runtime(
            "if msg.spin then while true do end end",
            dragonfly_lua::Limits {
                memory: 0,
                script_timeout: std::time::Duration::from_millis(100),
                ..Default::default()
            },
        );
        tx.send(rt.watched().unwrap().clone()).unwrap();
        // never returns: the watchdog parks this thread
        let _ = rt.run_batch(
            0,
            &batch_of(&[r#"{"n":1}"#, r#"{"spin":true}"#, r#"{"n":3}"#]),
        );
        unreachable!("a parked thread does not come back");
    });
    let w = rx.recv().unwrap();
    let t = std::time::Instant::now();
    while !w.parked() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "not parked"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: parked() is true; salvaged once.
    let s = unsafe { dragonfly_lua::watchdog::salvage(&w) };
    assert_eq!(s.input_index, Some(1));
    assert_eq!(s.caller, dragonfly_lua::Caller::Filter(0));
    assert_eq!(s.outputs.len(), 1);
    let lines: Vec<&[u8]> = s.outputs[0].iter().collect();
    assert_eq!(lines, vec![&b"{\"n\":1}\n"[..]]);
}

#[test]
fn scripts_have_their_own_libraries_and_loop_is_sealed() {
    let mut rt = RuntimeSpec::builder()
        .script(
            ScriptSpec::filter(
                "in",
                r#"
                string.upper = function() return "patched" end
                mine = 1
                function setup() opened = io ~= nil end
                function loop(msg)
                  msg.io, msg.opened, msg.exit = tostring(io), opened, pcall(os.exit)
                  dragonfly.analyze_event("a", msg)
                end"#,
            )
            .display("filter/f.lua")
            .default_analyzer("a"),
        )
        .script(
            ScriptSpec::analyzer(
                "a",
                r#"function loop(msg)
                  msg.upper, msg.mine = string.upper("x"), tostring(mine)
                  dragonfly.output_event("out", msg)
                end"#,
            )
            .default_output("out"),
        )
        .output("out")
        .ready()
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    rt.run_batch(0, &batch_of(&["{}"])).unwrap();
    assert!(rt.take_failures().is_empty());
    let out = rt.take_output(0);
    let v: serde_json::Value = serde_json::from_slice(out.get(0)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"io":"nil","opened":true,"exit":false,"upper":"X","mine":"nil"})
    );
}

fn hostile_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..120),
        // deep nesting, objects and arrays
        (1usize..5000).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()),
        (1usize..3000)
            .prop_map(|d| { format!("{}1{}", "{\"a\":".repeat(d), "}".repeat(d)).into_bytes() }),
        // numbers at the edges
        prop::sample::select(vec![
            "1e309",
            "-1e309",
            "18446744073709551616",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "0.000000000000000000000000001e-400",
            "1E+2",
            "-0",
            "0e0",
        ])
        .prop_map(|n| format!("{{\"n\":{n}}}").into_bytes()),
        // strings with NULs, escapes, invalid UTF-8, lone surrogates
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| {
            let mut v = b"{\"s\":\"".to_vec();
            v.extend(b.into_iter().filter(|c| *c != b'"' && *c != b'\\'));
            v.extend(b"\",\"nul\":\"a\\u0000b\",\"sur\":\"\\ud800\"}");
            v
        }),
        // duplicate keys, empty keys, huge key counts
        (0usize..2000).prop_map(|n| {
            let body: Vec<String> = (0..n).map(|i| format!("\"k{}\":{i}", i % 7)).collect();
            format!("{{\"\":1,{}}}", body.join(",")).into_bytes()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200),
        ..ProptestConfig::default()
    })]
    /// Whatever bytes a line holds, the batch path decodes it into an event or marks it
    /// malformed, never panics or breaks the runtime, and valid events come out as JSON.
    #[test]
    fn hostile_lines_are_events_or_malformed_never_a_crash(
        lines in prop::collection::vec(hostile_line(), 1..8),
    ) {
        let mut rt = echo_runtime();
        let mut b = dragonfly_event::Batch::default();
        for l in &lines {
            b.push(l);
        }
        let res = rt.run_batch(0, &b).expect("the batch path never fails as a whole");
        prop_assert_eq!(res.events + res.malformed.len(), lines.len());
        let failures = rt.take_failures();
        let out = rt.take_output(0);
        prop_assert_eq!(out.len() + failures.len(), res.events, "{:?}", failures);
        for line in out.iter() {
            match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(_) => {}
                // serde_json stops at 128 levels; deeper events are valid JSON all the same
                Err(e) if e.to_string().contains("recursion limit exceeded") => {}
                Err(e) => prop_assert!(false, "{e}: {}", String::from_utf8_lossy(line)),
            }
        }
        // the runtime still works
        rt.run_batch(0, &batch_of(&["{\"ok\":1}"])).unwrap();
        prop_assert_eq!(rt.take_output(0).len(), 1);
    }
}

/// Everything a call does lands in the one outcome the engine moves out: lines per output,
/// failures with their kind and event, routing loops, unknown tags of every kind, timers,
/// events per analyzer, log and stats lines; a second take is empty.
#[test]
fn every_outcome_of_a_call_lands_in_the_outcome() {
    let mut rt = RuntimeSpec::builder()
        .filter(
            "in",
            r#"function loop(msg)
                 dragonfly.analyze_event("a", msg)
                 dragonfly.analyze_event("nowhere", msg)
                 dragonfly.output_event("nothing", msg)
                 dragonfly.timer_event("a", 5, { t = 1 })
                 dragonfly.timer_event("no-timer", 5, {})
                 dragonfly.log_event({ log = msg.n })
                 dragonfly.stats_event({ stats = msg.n })
                 if msg.n == 2 then error("two") end
                 if msg.n == 3 then dragonfly.analyze_event("loop", msg) end
               end"#,
        )
        .analyzer(
            "a",
            r#"function loop(msg) dragonfly.output_event("out", msg) end"#,
        )
        .analyzer(
            "loop",
            r#"function loop(msg) dragonfly.analyze_event("loop", msg) end"#,
        )
        .output("out")
        .ready()
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    rt.run_batch(0, &batch_of(&[r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]))
        .unwrap();
    let res = rt.take_results();
    let kinds: Vec<_> = res
        .failures
        .iter()
        .map(|f| (f.kind, f.input_index, f.error.script.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (dragonfly_lua::FailureKind::Error, Some(1), "filter/in.lua"),
            (
                dragonfly_lua::FailureKind::RoutingLoop,
                Some(2),
                "analyzer/loop.lua"
            ),
        ]
    );
    assert!(
        res.failures[0].error.message.ends_with("two"),
        "{:?}",
        res.failures[0]
    );
    assert_eq!(res.failures[0].event, r#"{"n":2}"#);
    assert_eq!(res.loops_cut, 1);
    assert_eq!(res.counts[0], 3, "analyzer a got every event");
    // the chain's hops up to the cut ran; the one past MAX_HOPS did not
    assert_eq!(res.counts[1] as usize, dragonfly_lua::runtime::MAX_HOPS - 1);
    let unknown: Vec<_> = res.unknown.iter().map(|(t, k)| (t.as_str(), *k)).collect();
    use dragonfly_lua::TagKind::{Analyzer, Output, Timer};
    assert_eq!(
        unknown,
        [
            ("nowhere", Analyzer),
            ("nothing", Output),
            ("no-timer", Timer),
            ("nowhere", Analyzer),
            ("nothing", Output),
            ("no-timer", Timer),
            ("nowhere", Analyzer),
            ("nothing", Output),
            ("no-timer", Timer),
        ]
    );
    assert_eq!(res.timers.len(), 3);
    assert!(res.timers.iter().all(|t| t.analyzer == 0));
    let lines = rt.take_lines();
    assert_eq!(lines.outputs[0].len(), 3);
    assert_eq!(lines.log.len(), 3);
    assert_eq!(lines.stats.len(), 3);
    assert_eq!(lines.log.get(0), b"{\"log\":1}\n");
    // taken: the next take is empty
    let again = rt.take_results();
    assert!(again.failures.is_empty() && again.unknown.is_empty() && again.timers.is_empty());
    assert_eq!((again.loops_cut, again.counts), (0, vec![0, 0]));
    assert!(rt.take_lines().outputs[0].is_empty());
}

/// Taps (Runtime::set_taps): an analyzer's values are taken as it is handed them (before it
/// changes them), up to each tap's budget, only those that pass its filters; lazy and eager
/// events alike; no plan, nothing taken.
#[test]
fn taps_take_what_an_analyzer_is_handed_up_to_their_budget_and_filters() {
    for lazy in [true, false] {
        let mut rt = RuntimeSpec::builder()
            .script(
                ScriptSpec::filter("in", "function loop(e) dragonfly.analyze_event('a', e) end")
                    .default_analyzer("a"),
            )
            .script(
                ScriptSpec::analyzer(
                    "a",
                    "function loop(e) e.changed = true; dragonfly.output_event('out', e) end",
                )
                .default_output("out"),
            )
            .output("out")
            .lazy_events(lazy)
            .ready()
            .map_err(|e| format!("{e:?}"))
            .unwrap();
        let lines: Vec<String> = (0..10)
            .map(|i| {
                let t = if i % 2 == 0 { "dns" } else { "flow" };
                format!(
                    r#"{{"event_type":"{t}","i":{i},"dns":{{"port":{}}}}}"#,
                    50 + i
                )
            })
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let batch = batch_of(&refs);
        // nothing set: nothing taken
        rt.run_batch(0, &batch).unwrap();
        assert!(rt.take_results().tapped.is_empty());
        let plan = |id, budget, filters: &[(&str, &str)]| dragonfly_lua::TapPlan {
            analyzer: 0,
            id,
            budget,
            filters: filters
                .iter()
                .map(|(p, v)| (p.split('.').map(String::from).collect(), v.to_string()))
                .collect(),
        };
        rt.set_taps(&[
            plan(1, 3, &[]),
            plan(2, 10, &[("event_type", "dns"), ("dns.port", "54.0")]),
            plan(3, 10, &[("missing.field", "x")]),
        ])
        .unwrap();
        rt.run_batch(0, &batch).unwrap();
        let tapped = rt.take_results().tapped;
        let of = |id| -> Vec<serde_json::Value> {
            tapped
                .iter()
                .filter(|t| t.0 == id)
                .map(|t| {
                    assert_eq!(t.1, 0);
                    serde_json::from_slice(&t.2).unwrap()
                })
                .collect()
        };
        let first = of(1);
        assert_eq!(first.len(), 3, "lazy {lazy}");
        assert_eq!(first[2]["i"], 2);
        assert!(
            first.iter().all(|v| v.get("changed").is_none()),
            "taken before the analyzer ran"
        );
        let second = of(2);
        assert_eq!(second.len(), 1, "lazy {lazy}: {second:?}");
        assert_eq!(second[0]["i"], 4);
        assert!(of(3).is_empty());
        // the outputs are what they were
        assert_eq!(rt.take_output(0).len(), 20);
        rt.set_taps(&[]).unwrap();
        rt.run_batch(0, &batch).unwrap();
        assert!(rt.take_results().tapped.is_empty());
    }
}

/// The hand-offs each script made, by destination (the live page's edges): analyzers,
/// outputs and tags that name nothing, taken and zeroed.
#[test]
fn results_count_each_scripts_hand_offs_by_destination() {
    use dragonfly_lua::{Caller, EdgeTo, TagKind};
    let mut rt = RuntimeSpec::builder()
        .script(
            ScriptSpec::filter(
                "in",
                "function loop(e) if e.n % 2 == 0 then dragonfly.analyze_event('a', e) else dragonfly.analyze_event('nope', e) end end",
            )
            .default_analyzer("a"),
        )
        .script(
            ScriptSpec::analyzer(
                "a",
                "function loop(e) dragonfly.output_event('out', e); if e.n == 0 then dragonfly.output_event('nowhere', e) end end",
            )
            .default_output("out"),
        )
        .output("out")
        .ready()
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    let lines: Vec<String> = (0..10).map(|n| format!(r#"{{"n":{n}}}"#)).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    rt.run_batch(0, &batch_of(&refs)).unwrap();
    let mut edges: Vec<(Caller, EdgeTo, u64)> = rt
        .take_edges()
        .into_iter()
        .map(|e| (e.from, e.to, e.events))
        .collect();
    edges.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(
        edges,
        vec![
            (Caller::Analyzer(0), EdgeTo::Output(0), 5),
            (
                Caller::Analyzer(0),
                EdgeTo::Unknown(TagKind::Output, "nowhere".into()),
                1
            ),
            (Caller::Filter(0), EdgeTo::Analyzer(0), 5),
            (
                Caller::Filter(0),
                EdgeTo::Unknown(TagKind::Analyzer, "nope".into()),
                5
            ),
        ]
    );
    assert!(rt.take_edges().is_empty(), "taken once");
    // and counted again from zero
    rt.run_batch(0, &batch_of(&refs)).unwrap();
    assert_eq!(rt.take_edges().len(), 4);
}
