//! The script sandbox, tried as an attacker would: one script against another, against the
//! engine's shared tables, against files it should not read and code it should not load, and
//! against the time and memory limits of the setup phase.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dragonfly_lua::{Limits, Runtime, RuntimeSpec, ScriptSpec};

/// A root directory with `lib/` and `analyzer/`, removed when dropped.
struct Root(PathBuf);

impl Root {
    fn new() -> Self {
        let d = std::env::temp_dir().join(format!(
            "sandbox-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(d.join("lib")).unwrap();
        std::fs::create_dir_all(d.join("analyzer")).unwrap();
        std::fs::create_dir_all(d.join("filter")).unwrap();
        Root(d)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Filter `a` hands every event to analyzer `b`, which writes it to `out`.
fn build(root: &Path, a: &str, b: &str, limits: Limits) -> Result<Runtime, String> {
    RuntimeSpec::builder()
        .root(root)
        .script(
            ScriptSpec::filter("in", a)
                .display("filter/a.lua")
                .default_analyzer("b")
                .default_output("out"),
        )
        .script(ScriptSpec::analyzer("b", b).default_output("out"))
        .output("out")
        .limits(limits)
        .build()
        .map_err(|e| format!("{e:?}"))
}

fn ready(root: &Path, a: &str, b: &str) -> Runtime {
    let mut rt = build(root, a, b, Limits::default()).unwrap();
    let errs = rt.setup();
    assert!(errs.is_empty(), "{errs:?}");
    rt
}

/// Run one `{}` event; the JSON line `b` wrote, and every failure.
fn run_one(rt: &mut Runtime) -> (serde_json::Value, Vec<String>) {
    let mut batch = dragonfly_event::Batch::default();
    batch.push(b"{}");
    rt.run_batch(0, &batch).unwrap();
    let failures: Vec<String> = rt
        .take_failures()
        .iter()
        .map(|f| f.error.to_string())
        .collect();
    let out = rt.take_output(0);
    let v = if out.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(out.get(0)).unwrap()
    };
    (v, failures)
}

/// Script `a` tries `attempts` (Lua expressions run in pcall, by name) and passes the outcome
/// of each to `b` in the event: "ok" or the error.
fn attempts(pairs: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "local function try(f) local ok, e = pcall(f) if ok then return 'ok' end return tostring(e) end
         function loop(m)\n",
    );
    for (name, code) in pairs {
        s.push_str(&format!("  m[{name:?}] = try(function() {code} end)\n"));
    }
    s.push_str("  dragonfly.analyze_event('b', m)\nend\n");
    s
}

#[test]
fn what_every_script_shares_is_read_only() {
    let root = Root::new();
    let a = attempts(&[
        (
            "string_index",
            "getmetatable('').__index = function() return 'pwned' end",
        ),
        (
            "string_lib",
            "getmetatable('').__index.upper = function() return 'pwned' end",
        ),
        ("rawset_lib", "rawset(getmetatable('').__index, 'upper', 1)"),
        ("rawset_mt", "rawset(getmetatable(''), '__index', {})"),
        (
            "array_mt",
            "cjson.array_mt.__index = function() return 'pwned' end",
        ),
        (
            "rawset_array_mt",
            "rawset(cjson.array_mt, '__newindex', print)",
        ),
        ("unprotect", "setmetatable(cjson.array_mt, nil)"),
        ("ok_name", "hiredis.OK.name = 'pwned'"),
        ("rawset_ok", "rawset(hiredis.OK, 'name', 'pwned')"),
        ("status", "hiredis.status.PONG = hiredis.NIL"),
        ("nil_type", "hiredis.NIL.type = 1"),
        ("empty_array", "table.insert(cjson.empty_array, 'pwned')"),
    ]);
    let b = r#"function loop(m)
        local conn = hiredis.connect()
        m.upper = ("x"):upper()
        m.arr = tostring(cjson.decode("[1]").missing)
        m.ok = tostring(conn:command("SET", "k", "v") == hiredis.OK) .. " " .. hiredis.OK.name
        m.pong = tostring(conn:command("PING") == hiredis.status.PONG)
        m.empty = cjson.encode(cjson.empty_array)
        dragonfly.output_event("out", m)
    end"#;
    let mut rt = ready(root.path(), &a, b);
    let (v, failures) = run_one(&mut rt);
    assert!(failures.is_empty(), "{failures:?}");
    for key in [
        "string_index",
        "string_lib",
        "rawset_lib",
        "rawset_mt",
        "array_mt",
        "rawset_array_mt",
        "unprotect",
        "ok_name",
        "rawset_ok",
        "status",
        "nil_type",
    ] {
        let e = v[key].as_str().unwrap();
        assert!(
            e.contains("read-only") || e.contains("protected metatable"),
            "{key}: {e}"
        );
    }
    // a script's own empty array is its own
    assert_eq!(v["empty_array"], "ok");
    // and the other script sees nothing of any of it
    assert_eq!(v["upper"], "X");
    assert_eq!(v["arr"], "nil");
    assert_eq!(v["ok"], "true OK");
    assert_eq!(v["pong"], "true");
    assert_eq!(v["empty"], "[]");
}

#[test]
fn no_script_reaches_another_scripts_environment() {
    let root = Root::new();
    // `a` hands `b` a function that looks up the stack for `b`'s globals
    let a = r#"
        local pcall, getfenv, setfenv, type, concat = pcall, getfenv, setfenv, type, table.concat
        local function probe()
          local seen = {}
          for level = 1, 8 do
            local ok, e = pcall(getfenv, level)
            if ok and type(e) == "table" and e.secret ~= nil then seen[#seen + 1] = e.secret end
            -- level 2 is probe itself (this script's own function): fine to change
            if level ~= 2 then
              local ok2 = pcall(setfenv, level, {})
              if ok2 then seen[#seen + 1] = "setfenv " .. level end
            end
          end
          return concat(seen, ",")
        end
        function loop(m)
          m.setfenv0 = select(2, pcall(setfenv, 0, {}))
          m.setfenv_c = select(2, pcall(setfenv, print, {}))
          m.setfenv_engine = select(2, pcall(setfenv, dragonfly.analyze_event, {}))
          m.getfenv0 = getfenv(0) == _G
          m.loaded_g = package.loaded._G == _G
          m.loadstring_g = loadstring("return _G")() == _G
          m.load_g = load(function() return nil end) ~= nil
          m.probe = probe
          dragonfly.analyze_event("b", m)
        end"#;
    let b = r#"
        secret = "b's secret"
        function loop(m)
          m.found = m.probe()
          m.probe = nil
          dragonfly.output_event("out", m)
        end"#;
    let mut rt = ready(root.path(), a, b);
    let (v, failures) = run_one(&mut rt);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(v["found"], "", "{v}");
    for key in ["setfenv0", "setfenv_c", "setfenv_engine"] {
        assert!(
            v[key].as_str().unwrap().contains("not allowed")
                || v[key].as_str().unwrap().contains("not this script's"),
            "{key}: {v}"
        );
    }
    for key in ["getfenv0", "loaded_g", "loadstring_g", "load_g"] {
        assert_eq!(v[key], true, "{key}: {v}");
    }
}

#[test]
fn jit_finalizers_bytecode_dumps_and_the_collector_are_out_of_reach() {
    let root = Root::new();
    let a = attempts(&[
        ("jit", "return jit.off()"),
        ("newproxy", "return newproxy(true)"),
        ("dump", "return string.dump(print)"),
        ("jit_util", "return require('jit.util')"),
        ("jit_profile", "return require('jit.profile')"),
        ("buffer", "return require('string.buffer')"),
        ("loaders", "return package.loaders[3]('x')"),
        ("gc_stop", "collectgarbage('stop')"),
        ("gc_pause", "collectgarbage('setpause', 100000)"),
        ("gc_count", "assert(collectgarbage('count') > 0)"),
        ("table_new", "assert(require('table.new')(4, 0))"),
    ]);
    // `b` makes garbage far past the memory limit: only a running collector keeps it alive
    let b = r#"function loop(m)
        for i = 1, 200 do local t = {} for j = 1, 10000 do t[j] = j end end
        dragonfly.output_event("out", m)
    end"#;
    let mut rt = build(
        root.path(),
        &a,
        b,
        Limits {
            memory: 48 << 20,
            ..Limits::default()
        },
    )
    .unwrap();
    assert!(rt.setup().is_empty());
    let (v, failures) = run_one(&mut rt);
    assert!(failures.is_empty(), "{failures:?}");
    for key in [
        "jit",
        "newproxy",
        "dump",
        "jit_util",
        "jit_profile",
        "buffer",
        "loaders",
        "gc_stop",
        "gc_pause",
    ] {
        assert_ne!(v[key], "ok", "{key}: {v}");
    }
    assert!(
        v["gc_stop"].as_str().unwrap().contains("not allowed"),
        "{v}"
    );
    assert_eq!(v["gc_count"], "ok");
    assert_eq!(v["table_new"], "ok");
}

#[test]
fn code_loads_as_text_from_the_script_directories_only_and_never_shows_a_files_text() {
    let root = Root::new();
    let r = root.path();
    std::fs::write(r.join("lib/util.lua"), "return { answer = 42 }").unwrap();
    // a LuaJIT bytecode header and a corrupted body: loading it once crashed the engine
    let mut bc = b"\x1bLJ\x02\x00\x09@evil.lua".to_vec();
    bc.extend(std::iter::repeat_n(0xffu8, 64));
    std::fs::write(r.join("lib/evil.lua"), &bc).unwrap();
    // a file outside the script directories, whose text must never reach a message
    let secret = r.join("secret.txt");
    std::fs::write(&secret, "root:TOKEN-0123456789:19000:0:99999:7:::\n").unwrap();
    let outside = r.join("outside.lua");
    std::fs::write(&outside, "return 'outside'").unwrap();
    let a = format!(
        r#"
        local S, O, R = {secret:?}, {outside:?}, {root:?}
        function setup()
          -- setup() is trusted: any file, but still as text, and no text in messages
          local f, e = loadfile(S)
          early_secret = tostring(e)
          early_outside = dofile(O)
        end
        local function err(f, ...) local ok, e = pcall(f, ...) return ok and "ok" or tostring(e) end
        function loop(m)
          m.early_secret, m.early_outside = early_secret, early_outside
          m.util = require("util").answer
          m.loadfile_util = loadfile(R .. "/lib/util.lua")().answer
          m.bytecode_load = select(2, load("\27LJ\2\0\9@x"))
          m.bytecode_loadstring = select(2, loadstring("\27LJ\2"))
          m.bytecode_loadfile = select(2, loadfile(R .. "/lib/evil.lua"))
          m.bytecode_dofile = err(dofile, R .. "/lib/evil.lua")
          m.bytecode_require = err(require, "evil")
          m.binary_mode = select(2, load("return 1", "x", "b"))
          m.secret_loadfile = select(2, loadfile(S))
          m.secret_dofile = err(dofile, S)
          m.outside = err(dofile, O)
          package.path = {root:?} .. "/?.lua;" .. package.path
          m.outside_require = err(require, "outside")
          m.shadow = err(dofile, "/etc/shadow")
          m.http_get = err(dragonfly.http_get, "http://127.0.0.1:1/x", R .. "/lib/x.lua")
          dragonfly.analyze_event("b", m)
        end"#,
        secret = secret.display().to_string(),
        outside = outside.display().to_string(),
        root = r.display().to_string(),
    );
    let b = r#"function loop(m) dragonfly.output_event("out", m) end"#;
    let mut rt = ready(r, &a, b);
    let (v, failures) = run_one(&mut rt);
    assert!(failures.is_empty(), "{failures:?}");
    let text = v.to_string();
    assert!(
        !text.contains("TOKEN"),
        "a file's text reached a message: {text}"
    );
    assert!(
        !text.contains("root:"),
        "a file's text reached a message: {text}"
    );
    assert_eq!(v["early_outside"], "outside", "{v}");
    assert_eq!(v["util"], 42);
    assert_eq!(v["loadfile_util"], 42);
    for key in [
        "bytecode_load",
        "bytecode_loadstring",
        "bytecode_loadfile",
        "bytecode_dofile",
        "bytecode_require",
        "binary_mode",
    ] {
        let e = v[key].as_str().unwrap_or_default();
        assert!(e.contains("mode"), "{key}: {e}");
    }
    for key in [
        "secret_loadfile",
        "secret_dofile",
        "outside",
        "outside_require",
        "shadow",
    ] {
        let e = v[key].as_str().unwrap_or_default();
        assert!(e.contains("only from the script directories"), "{key}: {e}");
    }
    assert!(
        v["http_get"]
            .as_str()
            .unwrap()
            .contains("files are written in setup() only"),
        "{v}"
    );
    assert!(!r.join("lib/x.lua.part").exists() && !r.join("lib/x.lua").exists());
}

#[test]
fn module_and_seeall_work_on_the_scripts_own_tables() {
    let root = Root::new();
    std::fs::write(
        root.path().join("lib/oldstyle.lua"),
        "module('oldstyle', package.seeall)\nfunction twice(x) return 2 * x end\nname = tostring(default_output)",
    )
    .unwrap();
    let a = r#"function loop(m)
        local o = require("oldstyle")
        m.twice = o.twice(21)
        m.name = o.name
        m.own = oldstyle == o
        m.string_ok = pcall(module, "string") and string.upper("x") == "X"
        dragonfly.analyze_event("b", m)
    end"#;
    let b = r#"function loop(m) m.other = tostring(oldstyle) dragonfly.output_event("out", m) end"#;
    let mut rt = ready(root.path(), a, b);
    let (v, failures) = run_one(&mut rt);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(v["twice"], 42);
    assert_eq!(v["own"], true);
    assert_eq!(v["other"], "nil");
}

fn quick_setup() -> Limits {
    Limits {
        setup_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

#[test]
fn a_setup_that_never_returns_is_stopped_and_named() {
    let root = Root::new();
    // interpreted (a pcall in the loop keeps it from compiling whole) and swallowing nothing
    let a = "function setup() local n = 0 while true do n = n + 1 end end function loop(m) end";
    let mut rt = build(root.path(), a, "function loop(m) end", quick_setup()).unwrap();
    rt.lua().load("jit.off() jit.flush()").exec().unwrap();
    let t = Instant::now();
    let errs = rt.setup();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].script, "filter/a.lua");
    assert!(errs[0].message.contains("setup timeout"), "{errs:?}");

    // the top level of a script is timed the same way (a loop around a call LuaJIT does not
    // compile, so that the hook runs), on a thread of its own in case it parks
    let path = root.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = build(
            &path,
            "while true do local _ = getfenv(1) end function loop(m) end",
            "function loop(m) end",
            quick_setup(),
        );
        let _ = tx.send(r.err());
    });
    let err = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the top level did not stop")
        .expect("an error");
    assert!(
        err.contains("setup timeout") && err.contains("filter/a.lua"),
        "{err}"
    );
}

#[test]
fn a_compiled_loop_in_setup_parks_its_thread_instead_of_hanging_start_up() {
    let root = Root::new();
    let path = root.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rt = build(
            &path,
            "function setup() while true do end end function loop(m) end",
            "function loop(m) end",
            quick_setup(),
        )
        .unwrap();
        tx.send(rt.watched().unwrap().clone()).unwrap();
        let _ = rt.setup();
        unreachable!("a parked thread does not come back");
    });
    let w = rx.recv().unwrap();
    let t = Instant::now();
    while !w.parked() {
        assert!(t.elapsed() < Duration::from_secs(10), "not parked");
        std::thread::sleep(Duration::from_millis(10));
    }
}
