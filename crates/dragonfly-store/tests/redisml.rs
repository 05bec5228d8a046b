//! The RedisML command set: the Redis module (real redis-server 7 with --loadmodule) and the
//! embedded store must give the same replies; models survive SAVE and a restart.

use dragonfly_store::embedded::EmbeddedStore;
use dragonfly_store::redis_backend::{RedisAddr, RedisConnection, RedisTarget};
use dragonfly_store::{Connection, Reply};
use dragonfly_testkit::RedisServer;
use proptest::prelude::*;

/// The module built by `cargo build --release -p dragonfly-redisml` (scripts/test does), in
/// the same profile directory as this test (`<target>/release/deps/redisml-*`), wherever the
/// target directory is; `DRAGONFLY_REDISML_SO` names another.
fn module_path() -> String {
    let p = std::env::var("DRAGONFLY_REDISML_SO").unwrap_or_else(|_| {
        let exe = std::env::current_exe().unwrap();
        let profile = exe.parent().and_then(|deps| deps.parent()).unwrap();
        profile
            .join("libdragonfly_redisml.so")
            .to_string_lossy()
            .into_owned()
    });
    assert!(
        std::path::Path::new(&p).exists(),
        "{p} is missing: build it with `cargo build --release -p dragonfly-redisml`"
    );
    p
}

fn args(line: &str) -> Vec<Vec<u8>> {
    line.split(' ').map(|s| s.as_bytes().to_vec()).collect()
}

struct Both {
    server: RedisServer,
    redis: RedisConnection,
    embedded: EmbeddedStore,
}

impl Both {
    fn new() -> Self {
        let server = RedisServer::start_with(&["--loadmodule", &module_path()]);
        let redis = RedisTarget::new(RedisAddr::Tcp {
            host: "127.0.0.1".into(),
            port: server.port,
        })
        .connect()
        .unwrap();
        Both {
            server,
            redis,
            embedded: EmbeddedStore::new(),
        }
    }

    fn same(&mut self, cmd: &[Vec<u8>]) -> Result<Reply, String> {
        let want = self.redis.command(cmd);
        let got = self.embedded.execute(cmd);
        if want == got {
            Ok(got)
        } else {
            let line: Vec<String> = cmd
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Err(format!(
                "{}\n  module:   {want:?}\n  embedded: {got:?}",
                line.join(" ")
            ))
        }
    }

    fn script(&mut self, lines: &[(&str, Option<Reply>)]) {
        self.redis.command(&args("FLUSHALL"));
        self.embedded.execute(&args("FLUSHALL"));
        for (l, expect) in lines {
            let got = self.same(&args(l)).unwrap_or_else(|e| panic!("{e}"));
            if let Some(e) = expect {
                assert_eq!(&got, e, "{l}");
            }
        }
    }
}

fn bulk(s: &str) -> Option<Reply> {
    Some(Reply::Bulk(s.as_bytes().to_vec()))
}

fn err(s: &str) -> Option<Reply> {
    Some(Reply::Error(s.into()))
}

#[test]
fn spec_examples_and_errors_agree() {
    let mut b = Both::new();
    let wt = err("WRONGTYPE Operation against a key holding the wrong kind of value");
    b.script(&[
        ("ML.LINREG.SET linear 2 3 4 5", Some(Reply::ok())),
        ("ML.LINREG.PREDICT linear 1 1 1", bulk("14")),
        ("ML.LOGREG.SET logistic 0 2 2", Some(Reply::ok())),
        (
            "ML.LOGREG.PREDICT logistic -3 1",
            bulk("0.017986209962091559"),
        ),
        ("ML.MATRIX.SET a 2 3 1 2 5 3 4 6", Some(Reply::ok())),
        ("ML.MATRIX.SET b 3 2 1 2 3 4 7 1", Some(Reply::ok())),
        ("ML.MATRIX.MULTIPLY a b c", Some(Reply::ok())),
        (
            "ML.MATRIX.GET c",
            Some(Reply::Array(vec![
                Reply::Integer(2),
                Reply::Integer(2),
                bulk("42").unwrap(),
                bulk("15").unwrap(),
                bulk("57").unwrap(),
                bulk("28").unwrap(),
            ])),
        ),
        ("ML.MATRIX.ADD a a d", Some(Reply::ok())),
        ("ML.MATRIX.SCALE d 0.5", Some(Reply::ok())),
        ("ML.MATRIX.GET d", None),
        ("ML.KMEANS.SET k 2 3 1 1 2 2 5 4", Some(Reply::ok())),
        ("ML.KMEANS.PREDICT k 1 3 5", Some(Reply::Integer(1))),
        (
            "ML.FOREST.ADD f1 0 . numeric 1 0.1 .l leaf 1 .r leaf 0",
            Some(Reply::ok()),
        ),
        (
            "ML.FOREST.ADD f1 1 . NUM 1 0.1 .L LEAF 1 .R LEAF 0",
            Some(Reply::ok()),
        ),
        (
            "ML.FOREST.ADD f1 2 . n 1 0.1 .l l 0 .r l 1",
            Some(Reply::ok()),
        ),
        ("ML.FOREST.RUN f1 1:0.01 CLASSIFICATION", bulk("1")),
        ("ML.FOREST.RUN f1 1:0.2", bulk("0")),
        (
            "ML.FOREST.RUN f1 1:0.01 REGRESSION",
            bulk("0.66666666666666663"),
        ),
        (
            "ML.FOREST.ADD g 0 . CATEGORIC c 1:3 .l LEAF 0 STATS 8:2 .r LEAF 1 STATS 1:9",
            Some(Reply::ok()),
        ),
        ("ML.FOREST.RUN g c:3,x:1", bulk("0")),
        ("TYPE g", Some(Reply::Status("DFML-MODL".into()))),
        // errors
        ("ML.LINREG.PREDICT nope 1", wt.clone()),
        ("SET str v", Some(Reply::ok())),
        ("ML.LINREG.SET str 1 2", wt.clone()),
        ("ML.MATRIX.GET linear", wt.clone()),
        ("ML.FOREST.RUN str 1:1", wt.clone()),
        (
            "ML.LINREG.SET x 1",
            err("ERR wrong number of arguments for 'ml.linreg.set' command"),
        ),
        (
            "ML.MATRIX.GET",
            err("ERR wrong number of arguments for 'ml.matrix.get' command"),
        ),
        ("ML.LINREG.PREDICT linear 1 1 1 1", None),
        ("ML.FOREST.ADD f1 5 . LEAF 1", err("ERR Generic")),
        ("ML.FOREST.ADD f1 9 . LEAF 1 .l LEAF 2", err("ERR Generic")),
        (
            "ML.FOREST.ADD f1 4 .x LEAF 1 .l LEAF 2",
            err("Tree node path containes wrong characters, should be 'r' or 'l'"),
        ),
        (
            "ML.FOREST.ADD f1 4 . FOO 1 .l LEAF 2",
            err("Wrong node type , should be 'NUMERIC', 'CATEGORIC' or 'LEAF'"),
        ),
        (
            "ML.FOREST.ADD f1 3 . NUMERIC a 1 .l LEAF 2",
            err("Tree contains null nodes"),
        ),
        ("EXISTS f1", Some(Reply::Integer(0))),
        (
            "ML.FOREST.RUN g nocolon",
            err("Feature vector parsing failed. Format should be : 'key:val,key:val'..."),
        ),
        (
            "ML.MATRIX.SET m 0 1 5",
            err("Matrix dimentions should be positive"),
        ),
        ("ML.MATRIX.SET m 2 2 1 2 3", None),
        (
            "ML.MATRIX.MULTIPLY a a e",
            err("Wrong matrix dimentions b:rows should equal a:cols"),
        ),
        (
            "ML.MATRIX.ADD a b e",
            err("Added matrices dimentions should be equal"),
        ),
        ("ML.KMEANS.SET k 2 2 1 2 3", None),
        ("ML.KMEANS.PREDICT k 1 2", None),
        (
            "ML.LINREG.SET x 1 abc",
            err("ERR value is not a valid float"),
        ),
    ]);
}

#[test]
fn whitespace_arguments_from_command_line_are_ignored() {
    let mut b = Both::new();
    // what conn:command_line makes of a public DGA model line ending in " \n"
    let mut cmd = args("ML.FOREST.ADD dga 0 . NUMERIC len 10 .l LEAF 0 .r LEAF 1");
    cmd.push(b"\n".to_vec());
    assert_eq!(b.same(&cmd).unwrap(), Reply::ok());
    assert_eq!(
        b.same(&args("ML.FOREST.RUN dga len:20")).unwrap(),
        bulk("1").unwrap()
    );
    assert_eq!(
        b.same(&args("ML.FOREST.RUN dga len:3")).unwrap(),
        bulk("0").unwrap()
    );
}

#[test]
fn models_survive_save_and_restart() {
    let mut b = Both::new();
    for c in [
        "ML.LOGREG.SET lr 0.5 1 -2",
        "ML.FOREST.ADD f 0 . CAT c 1:2 .l LEAF 0 STATS 3:1 .r NUMERIC n 2.5 .rl LEAF 1 .rr LEAF 2",
        "ML.MATRIX.SET m 2 2 1 2 3 4",
        "ML.KMEANS.SET k 2 2 0 0 10 10",
    ] {
        b.same(&args(c)).unwrap();
    }
    let queries = [
        "ML.LOGREG.PREDICT lr 1 2",
        "ML.FOREST.RUN f c:3,n:2",
        "ML.FOREST.RUN f c:2",
        "ML.MATRIX.GET m",
        "ML.KMEANS.PREDICT k 9 8",
    ];
    let before: Vec<Reply> = queries.iter().map(|q| b.redis.command(&args(q))).collect();
    assert_eq!(b.redis.command(&args("SAVE")), Reply::ok());
    b.server.restart();
    let target = RedisTarget::new(RedisAddr::Tcp {
        host: "127.0.0.1".into(),
        port: b.server.port,
    });
    let mut fresh = target.connect().unwrap();
    let after: Vec<Reply> = queries.iter().map(|q| fresh.command(&args(q))).collect();
    assert_eq!(before, after);
    // and the embedded store's snapshot keeps them too
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("s");
    b.embedded.save(&snap).unwrap();
    let e2 = EmbeddedStore::new();
    e2.load(&snap).unwrap();
    let emb: Vec<Reply> = queries.iter().map(|q| e2.execute(&args(q))).collect();
    assert_eq!(emb, after);
}

fn f(range: std::ops::Range<i32>) -> impl Strategy<Value = String> {
    (range, 0u32..3).prop_map(|(v, d)| format!("{}", v as f64 / 10f64.powi(d as i32)))
}

/// A random complete tree as ML.FOREST.ADD arguments.
fn tree(depth: u32) -> impl Strategy<Value = Vec<String>> {
    let leaf = (
        0u8..3,
        prop::option::of(prop::collection::vec(0u8..9, 1..4)),
    )
        .prop_map(|(v, stats)| {
            let mut out = vec!["LEAF".to_string(), v.to_string()];
            if let Some(s) = stats {
                out.push("STATS".into());
                out.push(
                    s.iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(":"),
                );
            }
            out
        });
    leaf.prop_recursive(depth, 32, 2, move |inner| {
        (
            prop::sample::select(vec!["a", "b", "3"]),
            f(-50..50),
            any::<bool>(),
            inner.clone(),
            inner,
        )
            .prop_map(|(attr, t, cat, l, r)| {
                let mut out = if cat {
                    vec![
                        "CATEGORIC".into(),
                        attr.to_string(),
                        format!("{}:2", t.split('.').next().unwrap()),
                    ]
                } else {
                    vec!["NUMERIC".into(), attr.to_string(), t]
                };
                out.push("\u{1}L".into());
                out.extend(l);
                out.push("\u{1}R".into());
                out.extend(r);
                out
            })
    })
}

/// Turn the nested form into `path node...` triples.
fn flatten(tokens: &[String]) -> Vec<String> {
    fn walk(t: &[String], i: &mut usize, path: String, out: &mut Vec<String>) {
        out.push(path.clone());
        let kind = t[*i].clone();
        out.push(kind.clone());
        *i += 1;
        if kind == "LEAF" {
            out.push(t[*i].clone());
            *i += 1;
            if t.get(*i).is_some_and(|x| x == "STATS") {
                out.push(t[*i].clone());
                out.push(t[*i + 1].clone());
                *i += 2;
            }
            return;
        }
        out.push(t[*i].clone());
        out.push(t[*i + 1].clone());
        *i += 2;
        assert_eq!(t[*i], "\u{1}L");
        *i += 1;
        walk(t, i, format!("{path}l"), out);
        assert_eq!(t[*i], "\u{1}R");
        *i += 1;
        walk(t, i, format!("{path}r"), out);
    }
    let mut out = Vec::new();
    let mut i = 0;
    walk(tokens, &mut i, ".".into(), &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn random_models_give_the_same_replies(
        coef in prop::collection::vec(f(-30..30), 1..6),
        feats in prop::collection::vec(prop::collection::vec(f(-30..30), 1..6), 1..5),
        trees in prop::collection::vec(tree(3), 1..4),
        samples in prop::collection::vec((f(-60..60), f(-60..60), f(-60..60)), 1..6),
        mat in (1usize..4, 1usize..4, prop::collection::vec(f(-9..9), 16)),
        centres in (1usize..4, 1usize..3, prop::collection::vec(f(-20..20), 9)),
    ) {
        thread_local! {
            static BOTH: std::cell::RefCell<Option<Both>> = const { std::cell::RefCell::new(None) };
        }
        BOTH.with(|cell| -> Result<(), TestCaseError> {
            let mut cell = cell.borrow_mut();
            let b = cell.get_or_insert_with(Both::new);
            b.redis.command(&args("FLUSHALL"));
            b.embedded.execute(&args("FLUSHALL"));
            let mut check = |line: String| -> Result<(), TestCaseError> {
                b.same(&args(&line)).map(|_| ()).map_err(TestCaseError::fail)
            };
            check(format!("ML.LINREG.SET r 0.5 {}", coef.join(" ")))?;
            for fv in &feats {
                check(format!("ML.LINREG.PREDICT r {}", fv.join(" ")))?;
                check(format!("ML.LOGREG.PREDICT r {}", fv.join(" ")))?;
            }
            for (tid, t) in trees.iter().enumerate() {
                check(format!("ML.FOREST.ADD f {tid} {}", flatten(t).join(" ")))?;
            }
            for (a, bb, c) in &samples {
                check(format!("ML.FOREST.RUN f a:{a},b:{bb},3:{c}"))?;
                check(format!("ML.FOREST.RUN f a:{a},3:{c} REGRESSION"))?;
            }
            let (r, c, vals) = mat;
            check(format!("ML.MATRIX.SET m {r} {c} {}", vals[..r * c].join(" ")))?;
            check(format!("ML.MATRIX.SET n {c} {r} {}", vals[..r * c].join(" ")))?;
            check("ML.MATRIX.MULTIPLY m n p".into())?;
            check("ML.MATRIX.ADD m m q".into())?;
            check("ML.MATRIX.SCALE q -1.5".into())?;
            for k in ["m", "p", "q"] {
                check(format!("ML.MATRIX.GET {k}"))?;
            }
            let (k, d, cv) = centres;
            check(format!("ML.KMEANS.SET km {k} {d} {}", cv[..k * d].join(" ")))?;
            for fv in &feats {
                if fv.len() >= d {
                    check(format!("ML.KMEANS.PREDICT km {}", fv[..d].join(" ")))?;
                }
            }
            Ok(())
        })?;
    }
}

/// One hostile argument: huge, negative, NaN/inf, empty, binary, paths, node words, lists.
fn hostile_arg() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "1e300",
            "1e15",
            "1e12",
            "4294967296",
            "4611686018427387904",
            "9223372036854775807",
            "-9223372036854775808",
            "18446744073709551617",
            "-1",
            "0",
            "1",
            "2",
            "3",
            "0.5",
            "nan",
            "NaN",
            "inf",
            "-inf",
            "1e-320",
            "",
            "   ",
            " \n",
            ".",
            ".l",
            ".r",
            ".lr",
            ".rl",
            ".x",
            "l",
            "LEAF",
            "leaf",
            "L",
            "NUMERIC",
            "CATEGORIC",
            "cat",
            "STATS",
            "1:2:3",
            "0:0:0",
            "1e300:1",
            "a:1,b:2",
            "1:0.5,2:1e300",
            ",,,",
            "CLASSIFICATION",
            "REGRESSION",
            "f",
            "m",
            "k",
            "r",
            "s",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..12),
        (-1000i64..1000).prop_map(|n| n.to_string().into_bytes()),
        (".[lr]{0,40}").prop_map(|s| s.into_bytes()),
    ]
}

const ML_COMMANDS: &[&str] = &[
    "ML.LINREG.SET",
    "ML.LOGREG.SET",
    "ML.LINREG.PREDICT",
    "ML.LOGREG.PREDICT",
    "ML.FOREST.ADD",
    "ML.FOREST.RUN",
    "ML.MATRIX.SET",
    "ML.MATRIX.GET",
    "ML.MATRIX.ADD",
    "ML.MATRIX.MULTIPLY",
    "ML.MATRIX.SCALE",
    "ML.KMEANS.SET",
    "ML.KMEANS.PREDICT",
];

fn hostile_command() -> impl Strategy<Value = Vec<Vec<u8>>> {
    (
        prop::sample::select(ML_COMMANDS),
        any::<bool>(),
        prop::sample::select(vec!["f", "m", "k", "r", "s", "missing", "", "\u{0}\u{ff}"]),
        prop::collection::vec(hostile_arg(), 0..14),
    )
        .prop_map(|(name, lower, key, rest)| {
            let name = if lower {
                name.to_ascii_lowercase()
            } else {
                name.to_string()
            };
            let mut v = vec![name.into_bytes(), key.as_bytes().to_vec()];
            v.extend(rest);
            v
        })
}

/// Cases per run: 300 in CI; scripts/fuzz sets PROPTEST_CASES for a long run.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(300), ..ProptestConfig::default() })]
    /// Sequences of hostile ML.* commands: the shared redis-server with the module stays up
    /// after every one, and it and the embedded store answer alike.
    #[test]
    fn hostile_ml_commands_never_crash_the_server_and_both_agree(
        cmds in prop::collection::vec(hostile_command(), 1..10),
    ) {
        thread_local! {
            static BOTH: std::cell::RefCell<Option<Both>> = const { std::cell::RefCell::new(None) };
        }
        BOTH.with(|cell| -> Result<(), TestCaseError> {
            let mut cell = cell.borrow_mut();
            let b = cell.get_or_insert_with(Both::new);
            b.redis.command(&args("FLUSHALL"));
            b.embedded.execute(&args("FLUSHALL"));
            b.redis.command(&args("SET s x"));
            b.embedded.execute(&args("SET s x"));
            for c in &cmds {
                b.same(c).map_err(TestCaseError::fail)?;
                let ping = b.redis.command(&args("PING"));
                prop_assert_eq!(ping, Reply::Status("PONG".into()), "the server died after {:?}", c);
            }
            Ok(())
        })?;
    }
}

#[test]
fn the_reproductions_of_issue_12_are_errors_not_crashes() {
    let mut b = Both::new();
    let big = |s: &str| args(s);
    for line in [
        "ML.FOREST.ADD f 0 . LEAF 1e300",
        "ML.FOREST.ADD g 0 . LEAF 1e15",
        "ML.FOREST.RUN f a:1",
        "ML.FOREST.RUN g a:1",
        "ML.MATRIX.SET m 4294967296 4294967296",
        "ML.MATRIX.MULTIPLY m m o",
        "ML.KMEANS.SET k 4611686018427387904 4",
        "ML.KMEANS.PREDICT k 1 2 3 4",
    ] {
        b.same(&big(line)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            b.redis.command(&args("PING")),
            Reply::Status("PONG".into()),
            "{line}"
        );
    }
    // a leaf of class 1e15 is a value, not a vector: the forest answers with it
    assert_eq!(
        b.same(&args("ML.FOREST.RUN g a:1")).unwrap(),
        Reply::Bulk(b"1000000000000000".to_vec())
    );
    // the matrix past MAX_VALUES is refused, naming the limit
    match b
        .same(&args("ML.MATRIX.SET m 4294967296 4294967296"))
        .unwrap()
    {
        Reply::Error(e) => assert!(e.contains("MAX_VALUES"), "{e}"),
        other => panic!("{other:?}"),
    }
    // a product over the limits: 4096x1 times 1x4096 is 16M values
    let col: Vec<String> = (0..4096).map(|i| i.to_string()).collect();
    b.same(&args(&format!("ML.MATRIX.SET a 4096 1 {}", col.join(" "))))
        .unwrap();
    b.same(&args(&format!("ML.MATRIX.SET c 1 4096 {}", col.join(" "))))
        .unwrap();
    match b.same(&args("ML.MATRIX.MULTIPLY a c p")).unwrap() {
        Reply::Status(s) if s == "OK" => {}
        Reply::Error(e) => assert!(e.contains("MAX_"), "{e}"),
        other => panic!("{other:?}"),
    }
    // a path deeper than MAX_TREE_DEPTH
    let deep = format!(".{}", "l".repeat(2000));
    match b
        .same(&args(&format!("ML.FOREST.ADD d 0 {deep} LEAF 1")))
        .unwrap()
    {
        Reply::Error(e) => assert!(e.contains("MAX_TREE_DEPTH"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn module_limits_are_set_at_load_time() {
    let server = RedisServer::start_with(&["--loadmodule", &module_path(), "MAX_VALUES", "10"]);
    let mut redis = RedisTarget::new(RedisAddr::Tcp {
        host: "127.0.0.1".into(),
        port: server.port,
    })
    .connect()
    .unwrap();
    assert_eq!(
        redis.command(&args("ML.MATRIX.SET m 2 5 1 2 3 4 5 6 7 8 9 10")),
        Reply::Status("OK".into())
    );
    match redis.command(&args("ML.MATRIX.SET m 3 4 1 2 3 4 5 6 7 8 9 10 11 12")) {
        Reply::Error(e) => assert!(e.contains("MAX_VALUES = 10"), "{e}"),
        other => panic!("{other:?}"),
    }
}
