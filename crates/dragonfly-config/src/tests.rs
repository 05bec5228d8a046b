use super::*;

fn root_with(scripts: &[&str]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for s in scripts {
        let p = d.path().join(s);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "function setup() end function loop(m) end").unwrap();
    }
    d
}

const GOOD: &str = r#"
redis_host = "127.0.0.1"
redis_port = "6379"
inputs = { { tag="eve", uri="file://eve.json", script="filter.lua", default_analyzer="hello" } }
analyzers = {
  { tag="hello", script="hello.lua", default_analyzer="out", default_output="log" },
  { tag="out", script="w.lua", default_analyzer="", default_output="log" },
}
outputs = { { tag="log", uri="file://eve-mle.log" } }
"#;

#[test]
fn loads_an_original_config() {
    let d = root_with(&["filter/filter.lua", "analyzer/hello.lua", "analyzer/w.lua"]);
    let c = parse(GOOD, "config/config.lua", d.path()).unwrap();
    assert_eq!(
        c.store,
        Store::Tcp {
            host: "127.0.0.1".into(),
            port: 6379
        }
    );
    assert_eq!(c.inputs[0].script_path, d.path().join("filter/filter.lua"));
    assert_eq!(c.analyzers[1].default_analyzer, "");
    assert!(c.warnings.is_empty());
}

#[test]
fn missing_field_names_file_entry_and_field() {
    let d = root_with(&["filter/filter.lua", "analyzer/hello.lua", "analyzer/w.lua"]);
    let src = GOOD.replace(r#"uri="file://eve.json", "#, "");
    let e = parse(&src, "config/config.lua", d.path()).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"config/config.lua: inputs[1] (tag "eve"): field 'uri': missing (required)"#
    );
}

#[test]
fn missing_script_is_named() {
    let d = root_with(&["filter/filter.lua", "analyzer/hello.lua"]);
    let e = parse(GOOD, "config/config.lua", d.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(r#"analyzers[2] (tag "out"): field 'script': script file not found: "#),
        "{e}"
    );
    assert!(e.contains("analyzer/w.lua"), "{e}");
}

#[test]
fn unknown_default_tags_are_errors_and_empty_means_none() {
    let d = root_with(&["filter/filter.lua", "analyzer/hello.lua", "analyzer/w.lua"]);
    let src = GOOD
        .replace(r#"default_analyzer="hello""#, r#"default_analyzer="helo""#)
        .replace(
            r#"default_analyzer="out", default_output="log""#,
            r#"default_analyzer="out", default_output="nowhere""#,
        );
    let e = parse(&src, "config/config.lua", d.path()).unwrap_err();
    let msgs: Vec<String> = e.0.iter().map(|x| x.to_string()).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs[0]
        .contains(r#"inputs[1] (tag "eve"): field 'default_analyzer': names no analyzer: 'helo'"#));
    assert!(msgs[1].contains(
        r#"analyzers[1] (tag "hello"): field 'default_output': names no output: 'nowhere'"#
    ));
}

#[test]
fn unknown_keys_warn_and_store_defaults_to_embedded() {
    let d = root_with(&["filter/filter.lua", "analyzer/hello.lua", "analyzer/w.lua"]);
    let src = GOOD.replace("redis_host = \"127.0.0.1\"", "").replace(
        r#"uri="file://eve-mle.log""#,
        r#"uri="file://eve-mle.log", colour="blue""#,
    );
    let c = parse(&src, "config/config.lua", d.path()).unwrap();
    assert_eq!(c.store, Store::Embedded);
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].contains(r#"outputs[1] (tag "log"): unknown key 'colour'"#),
        "{:?}",
        c.warnings
    );
}

#[test]
fn lua_syntax_errors_name_the_line() {
    let d = root_with(&[]);
    let e = parse("inputs = {\n  { tag = }\n}", "config/config.lua", d.path())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("config/config.lua: Lua error:"), "{e}");
    assert!(e.contains("config/config.lua:2:"), "{e}");
}

#[test]
fn unix_socket_redis_and_engine_knobs() {
    let d = root_with(&["filter/filter.lua", "analyzer/hello.lua", "analyzer/w.lua"]);
    let src = format!("{GOOD}\nredis_host='/run/redis.sock'\nredis_port=0\nengine={{stats_interval=5, max_line_bytes=1024}}");
    let c = parse(&src, "config/config.lua", d.path()).unwrap();
    assert_eq!(
        c.store,
        Store::Unix {
            path: "/run/redis.sock".into()
        }
    );
    assert_eq!(c.engine.stats_interval, 5.0);
    assert_eq!(c.engine.max_line_bytes, 1024);
}

#[test]
fn client_options_are_read_sorted_and_checked() {
    let d = root_with(&["filter/filter.lua", "analyzer/hello.lua", "analyzer/w.lua"]);
    let src = GOOD.replace(
        r#"default_analyzer="hello" }"#,
        r#"default_analyzer="hello", options = { ["session.timeout.ms"] = 6000, ["client.id"] = "mle", ["enable.auto.commit"] = false } }"#,
    );
    let c = parse(&src, "config/config.lua", d.path()).unwrap();
    assert_eq!(
        c.inputs[0].options,
        vec![
            ("client.id".to_string(), "mle".to_string()),
            ("enable.auto.commit".to_string(), "false".to_string()),
            ("session.timeout.ms".to_string(), "6000".to_string()),
        ]
    );
    assert!(c.outputs[0].options.is_empty());
    let bad = GOOD.replace(
        r#"uri="file://eve-mle.log""#,
        r#"uri="file://eve-mle.log", options = { ["linger.ms"] = {} }"#,
    );
    let e = parse(&bad, "config/config.lua", d.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(r#"outputs[1] (tag "log"): field 'options': 'linger.ms' must be a string, number or boolean, not a table"#),
        "{e}"
    );
}

/// The `engine = { ... }` block of docs/configuration.md.
fn documented_engine_block() -> String {
    let doc = include_str!("../../../docs/configuration.md");
    let start = doc
        .find("\nengine = {")
        .expect("docs show the engine table");
    let end = start + doc[start..].find("\n}\n").expect("engine table closes") + 3;
    doc[start..end].to_string()
}

#[test]
fn every_documented_engine_key_is_accepted_with_its_default() {
    let d = root_with(&["filter/filter.lua", "analyzer/hello.lua", "analyzer/w.lua"]);
    let block = documented_engine_block();
    let src = format!("{GOOD}\n{block}");
    let c = parse(&src, "config/config.lua", d.path()).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // the documented defaults are the real defaults
    assert_eq!(c.engine, Engine::default(), "{block}");
    // and the documentation lists exactly the keys the parser knows, with their defaults
    for key in ENGINE_KEYS {
        let line = block
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{} ", key.name)))
            .unwrap_or_else(|| panic!("docs/configuration.md does not list engine.{}", key.name));
        assert!(
            line.contains(&format!("= {},", key.default)),
            "engine.{}: documented as `{line}`, default is {}",
            key.name,
            key.default
        );
    }
    let listed = block
        .lines()
        .filter(|l| l.contains(" = ") && l.contains("--"))
        .count();
    assert_eq!(listed, ENGINE_KEYS.len(), "{block}");
}

#[test]
fn every_engine_key_of_the_wrong_type_is_an_error_naming_it() {
    let d = root_with(&["filter/filter.lua", "analyzer/hello.lua", "analyzer/w.lua"]);
    for key in ENGINE_KEYS {
        let wrong = match key.kind {
            KeyKind::Text => "{}",
            KeyKind::OneOf(_) => "'bogus'",
            KeyKind::Bool => "'yes'",
            KeyKind::Number { .. } => "'ten'",
        };
        let src = format!("{GOOD}\nengine = {{ {} = {wrong} }}", key.name);
        let errs = parse(&src, "config/config.lua", d.path()).unwrap_err();
        let text = errs.to_string();
        assert_eq!(errs.0.len(), 1, "{text}");
        assert!(
            text.starts_with(&format!(
                "config/config.lua: engine: field '{}': must be ",
                key.name
            )),
            "{text}"
        );
        if let KeyKind::Number { max, .. } = key.kind {
            let src = format!("{GOOD}\nengine = {{ {} = {} }}", key.name, max * 2.0 + 1.0);
            let text = parse(&src, "config/config.lua", d.path())
                .unwrap_err()
                .to_string();
            assert!(text.contains(&format!("field '{}'", key.name)), "{text}");
        }
    }
}

#[test]
fn engine_workers_and_partition_key_are_known_keys() {
    let d = root_with(&["filter/filter.lua", "analyzer/hello.lua", "analyzer/w.lua"]);
    let src = format!("{GOOD}\nengine = {{ workers = 2, partition_key = 'src_ip' }}");
    let c = parse(&src, "config/config.lua", d.path()).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.engine.workers, 2);
    assert_eq!(c.engine.partition_key, "src_ip");
}

#[test]
fn the_field_tables_of_configuration_md_match_the_parser() {
    let doc = include_str!("../../../docs/configuration.md");
    for (section, fields) in SECTIONS {
        let Some(start) = doc.find(&format!("\n## {section}\n")) else {
            assert_eq!(
                *section, "modules",
                "docs/configuration.md has no '## {section}'"
            );
            continue;
        };
        let body = &doc[start + 1..];
        let end = body[3..].find("\n## ").map(|e| e + 3).unwrap_or(body.len());
        let rows: Vec<(String, bool)> = body[..end]
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (cells[1].trim_matches('`').to_string(), cells[2] == "yes")
            })
            .collect();
        let want: Vec<(String, bool)> = fields
            .iter()
            .map(|f| (f.name.to_string(), f.required))
            .collect();
        assert_eq!(rows, want, "docs/configuration.md, section {section}");
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// A Lua value of any type the config might hold by mistake.
    fn lua_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z:/._<>-]{0,24}".prop_map(|s| format!("{s:?}")),
            any::<i64>().prop_map(|n| n.to_string()),
            prop::sample::select(vec![
                "nil",
                "true",
                "false",
                "0/0",
                "1/0",
                "-1/0",
                "2^63",
                "{}",
                "{1,2}",
                "{ x = {} }",
                "function() end",
                "'\\0binary\\255'",
                "string.rep('x', 100000)",
            ])
            .prop_map(str::to_string),
        ]
    }

    fn entry(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop::collection::vec((prop::sample::select(keys), lua_value()), 0..6).prop_map(|kv| {
            let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
            format!("{{ {} }}", body.join(", "))
        })
    }

    fn config_text() -> impl Strategy<Value = String> {
        let input_keys: &'static [&'static str] = &[
            "tag",
            "uri",
            "script",
            "default_analyzer",
            "options",
            "bogus",
        ];
        let analyzer_keys: &'static [&'static str] =
            &["tag", "script", "default_analyzer", "default_output", "x"];
        let output_keys: &'static [&'static str] = &["tag", "uri", "options"];
        let engine_keys: &'static [&'static str] = &[
            "workers",
            "batch_lines",
            "partition_key",
            "lua_memory_mb",
            "script_timeout_ms",
            "dead_letter",
            "drain_timeout_s",
            "stats_interval",
            "nope",
        ];
        (
            prop::collection::vec(entry(input_keys), 0..3),
            prop::collection::vec(entry(analyzer_keys), 0..3),
            prop::collection::vec(entry(output_keys), 0..3),
            entry(engine_keys),
            lua_value(),
            lua_value(),
            prop::collection::vec(any::<u8>(), 0..30),
        )
            .prop_map(|(i, a, o, e, host, port, junk)| {
                format!(
                    "redis_host = {host}\nredis_port = {port}\ninputs = {{ {} }}\nanalyzers = {{ {} }}\noutputs = {{ {} }}\nengine = {e}\n-- {}\n",
                    i.join(", "),
                    a.join(", "),
                    o.join(", "),
                    String::from_utf8_lossy(&junk).replace('\n', " ")
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
            ..ProptestConfig::default()
        })]
        /// Any config.lua of any shape is either a config or a list of errors, each naming
        /// the file; nothing panics.
        #[test]
        fn any_config_is_loaded_or_refused_with_named_errors(text in config_text()) {
            let d = root_with(&["filter/filter.lua", "analyzer/hello.lua"]);
            match parse(&text, "config/config.lua", d.path()) {
                Ok(_) => {}
                Err(errs) => {
                    prop_assert!(!errs.0.is_empty());
                    for e in &errs.0 {
                        prop_assert_eq!(&e.file, "config/config.lua");
                    }
                }
            }
        }

        /// Random bytes as Lua source: an error, never a panic.
        #[test]
        fn random_bytes_as_config_are_an_error_not_a_crash(b in prop::collection::vec(any::<u8>(), 0..200)) {
            let d = root_with(&[]);
            let _ = parse(&String::from_utf8_lossy(&b), "config/config.lua", d.path());
        }
    }
}

/// An entry after a broken one is named by its own place in config.lua, not by its place
/// among the entries that parsed.
#[test]
fn entries_keep_their_real_index_after_a_broken_one() {
    let d = root_with(&["filter/filter.lua", "analyzer/a.lua"]);
    let src = r#"
inputs = {
  { tag="broken", script="filter.lua", default_analyzer="a" },
  { tag="eve", uri="file://eve.json", script="filter.lua", default_analyzer="nobody" },
  { tag="eve", uri="file://eve2.json", script="filter.lua", default_analyzer="a" },
}
analyzers = { { tag="a", script="a.lua", default_analyzer="", default_output="o" } }
outputs = { { uri="file://x" }, { tag="o", uri="file://o.json" } }
"#;
    let (c, errors) = parse_partial(src, "config.lua", d.path()).unwrap();
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let all = text.join("\n");
    assert!(
        all.contains("inputs[2] (tag \"eve\"): field 'default_analyzer'"),
        "{all}"
    );
    assert!(
        all.contains("inputs[3] (tag \"eve\"): field 'tag'"),
        "{all}"
    );
    assert_eq!(c.inputs[0].entry, "inputs[2] (tag \"eve\")");
    assert_eq!(c.outputs[0].entry, "outputs[2] (tag \"o\")");
}

#[test]
fn the_http_address_must_be_one_to_listen_on() {
    let d = root_with(&["filter/filter.lua", "analyzer/hello.lua", "analyzer/w.lua"]);
    for bad in ["127.0.0.1:99999", "127.0.0.1", ":7070", "localhost:http"] {
        let src = format!("{GOOD}\nengine = {{ http = \"{bad}\" }}\n");
        let e = parse(&src, "config.lua", d.path()).unwrap_err().to_string();
        assert!(e.contains("engine: field 'http'"), "{bad}: {e}");
    }
    for good in ["127.0.0.1:7070", "[::1]:0", "localhost:9000", ""] {
        let src = format!("{GOOD}\nengine = {{ http = \"{good}\" }}\n");
        assert!(parse(&src, "config.lua", d.path()).is_ok(), "{good}");
    }
}
