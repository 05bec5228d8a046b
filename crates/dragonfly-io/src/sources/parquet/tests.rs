use super::*;
use serde_json::{json, Value};
use std::fs::File;

/// Write `lines` through the `parquet://` output into `dir` (its options as config.lua
/// gives them).
fn archive(dir: &Path, lines: &[String], options: &[(&str, &str)]) {
    let opts: Vec<(String, String)> = options
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let d = crate::sinks::parse(&format!("parquet://{}", dir.display()), dir, &opts).unwrap();
    let mut sink = d.open().unwrap();
    let mut b = Batch::default();
    for l in lines {
        b.push(format!("{l}\n").as_bytes());
    }
    sink.write(&b).unwrap();
    sink.close().unwrap();
}

/// Everything a replay of `dir` hands on, and its problems.
fn replay(dir: &Path, filter: Filter) -> (Vec<Value>, Vec<String>) {
    let sel = select::choose(dir, &filter).unwrap();
    let mut problems = sel.problems.clone();
    let mut m = Merge::new(sel.files, filter);
    let mut out = Vec::new();
    while let Some(r) = m.next() {
        match r {
            Ok(l) => out.push(
                serde_json::from_slice(l)
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(l))),
            ),
            Err(p) => problems.push(p),
        }
    }
    (out, problems)
}

/// The replay of `dir` is `lines`, value for value, in that order, without a problem.
fn assert_replays_as_written(dir: &Path, lines: &[String]) {
    let (got, problems) = replay(dir, Filter::default());
    assert!(problems.is_empty(), "{problems:?}");
    let want: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got, want);
}

fn ev(t: &str, kind: &str, extra: Value) -> String {
    let mut v = json!({"timestamp": t, "event_type": kind, "src_ip": "10.0.0.1"});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v.to_string()
}

/// Without its null fields (what the archive cannot keep).
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| (k.clone(), without_nulls(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        x => x.clone(),
    }
}

#[test]
fn values_come_back_as_they_were_written() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vec![
        ev(
            "2025-03-10T09:00:00.000001+0000",
            "dns",
            json!({"flow_id": 9007199254740993i64, "dns": {"answers": [{"rrname": "a\"b\\c\u{1}é", "ttl": 60}], "rcode": null},
                  "score": 0.1, "ok": true, "tags": ["x", null, "y"], "e": {}}),
        ),
        // `x` turns from a number into a string: the column becomes JSON text
        ev(
            "2025-03-10T09:00:01+0000",
            "dns",
            json!({"x": 5, "big": -9223372036854775808i64}),
        ),
        ev(
            "2025-03-10T09:00:02+0000",
            "dns",
            json!({"x": "five", "dns": {"rcode": "NXDOMAIN"}}),
        ),
        ev(
            "2025-03-10T09:00:03+0000",
            "dns",
            json!({"x": {"deep": [1, 2.5]}, "score": 1e300}),
        ),
    ];
    archive(dir.path(), &lines, &[]);
    let (got, problems) = replay(dir.path(), Filter::default());
    assert!(problems.is_empty(), "{problems:?}");
    let want: Vec<Value> = lines
        .iter()
        .map(|l| without_nulls(&serde_json::from_str(l).unwrap()))
        .collect();
    // `{}` is kept as JSON text by the writer (Parquet has no empty struct)
    assert_eq!(got, want);
    // integers stay integers, doubles doubles
    assert!(got[0]["flow_id"].is_i64() && got[0]["score"].is_f64());
    assert_eq!(got[1]["big"].as_i64(), Some(i64::MIN));
}

#[test]
fn partitions_are_merged_in_event_time_and_pruned_by_type_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for s in 0..40 {
        let kind = ["dns", "flow", "alert", "tls"][s % 4];
        lines.push(ev(
            &format!("2025-03-10T09:00:{s:02}+0000"),
            kind,
            json!({"n": s}),
        ));
    }
    // two writes: two files per partition, the second later in time
    archive(dir.path(), &lines[..20], &[]);
    archive(dir.path(), &lines[20..], &[]);
    let (got, problems) = replay(dir.path(), Filter::default());
    assert!(problems.is_empty(), "{problems:?}");
    let ns: Vec<i64> = got.iter().map(|v| v["n"].as_i64().unwrap()).collect();
    assert_eq!(
        ns,
        (0..40).collect::<Vec<_>>(),
        "event-time order across partitions"
    );

    let t = |s: &str| parse_time(s).unwrap();
    let f = Filter {
        from: Some(t("2025-03-10T09:00:10+0000")),
        to: Some(t("2025-03-10T10:00:15+0100")),
        event_types: vec!["dns".into(), "flow".into()],
    };
    let (got, _) = replay(dir.path(), f.clone());
    let ns: Vec<i64> = got.iter().map(|v| v["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, vec![12, 13]);
    // the other event types' files were not opened, nor the files before `from`
    let sel = select::choose(dir.path(), &f).unwrap();
    assert_eq!(sel.files.len(), 2, "{:?}", sel.files);
    assert_eq!(sel.pruned, 6);

    // unpartitioned: the type is tested per row
    let flat = tempfile::tempdir().unwrap();
    archive(flat.path(), &lines, &[("partition_by", "")]);
    let (got, _) = replay(
        flat.path(),
        Filter {
            event_types: vec!["tls".into()],
            ..Default::default()
        },
    );
    let ns: Vec<i64> = got.iter().map(|v| v["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, (0..10).map(|i| i * 4 + 3).collect::<Vec<_>>());
}

#[test]
fn time_options_take_timestamps_and_dates() {
    assert_eq!(parse_time("2025-03-10"), parse_time("2025-03-10T00:00:00Z"));
    assert_eq!(
        parse_time("2025-03-10T01:00:00+0100"),
        parse_time("2025-03-10T00:00:00.000000+0000")
    );
    assert!(parse_time("yesterday").is_none());
    let opts = |from: &str, to: &str| {
        crate::sources::parse(
            "parquet:///tmp/a",
            &[("from".into(), from.into()), ("to".into(), to.into())],
        )
    };
    assert!(opts("2025-03-10", "2025-03-11").is_ok());
    let e = opts("2025-03-11", "2025-03-10").unwrap_err().to_string();
    assert!(e.contains("from is not before to"), "{e}");
    let e = opts("soon", "2025-03-10").unwrap_err().to_string();
    assert!(e.contains("option from 'soon' is not a timestamp"), "{e}");
}

#[test]
fn bad_files_are_named_and_the_rest_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..10)
        .map(|s| {
            ev(
                &format!("2025-03-10T09:00:{s:02}+0000"),
                ["dns", "flow"][s % 2],
                json!({"n": s}),
            )
        })
        .collect();
    archive(dir.path(), &lines, &[]);
    let flow = dir.path().join("event_type=flow/date=2025-03-10");
    let good = std::fs::read_dir(&flow)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();

    // cut short, not Parquet at all, foreign, and a type the writer never makes
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(flow.join("cut.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(flow.join("text.parquet"), b"{\"not\": \"parquet\"}\n").unwrap();
    let foreign = flow.join("foreign.parquet");
    let strange = flow.join("strange.parquet");
    for (path, by) in [(&foreign, None), (&strange, Some("dragonfly-mle 0.0.0"))] {
        use arrow_array::{Int32Array, RecordBatch};
        let schema =
            std::sync::Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
                "n",
                arrow_schema::DataType::Int32,
                true,
            )]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![std::sync::Arc::new(Int32Array::from(vec![1]))],
        )
        .unwrap();
        let mut props = parquet::file::properties::WriterProperties::builder();
        if let Some(by) = by {
            props = props.set_created_by(by.to_string());
        }
        let mut w = parquet::arrow::ArrowWriter::try_new(
            File::create(path).unwrap(),
            schema,
            Some(props.build()),
        )
        .unwrap();
        w.write(&b).unwrap();
        w.close().unwrap();
    }
    let (got, problems) = replay(dir.path(), Filter::default());
    let ns: Vec<i64> = got.iter().map(|v| v["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, (0..10).collect::<Vec<_>>(), "every good row, in order");
    let all = problems.join("\n");
    for (name, says) in [
        ("cut.parquet", "not read"),
        ("text.parquet", "not read"),
        ("foreign.parquet", "not written by dragonfly-mle"),
        ("strange.parquet", "column n is Int32"),
    ] {
        assert!(
            problems
                .iter()
                .any(|p| p.contains(name) && p.contains(says)),
            "{name}: {says}:\n{all}"
        );
    }
    assert_eq!(problems.len(), 4, "{all}");

    // a file swapped for a link after the scan is not followed
    let sel = select::choose(dir.path(), &Filter::default()).unwrap();
    let victim = sel
        .files
        .iter()
        .find(|c| c.rel.contains("dns"))
        .unwrap()
        .path
        .clone();
    let kept = std::fs::read(&victim).unwrap();
    std::fs::remove_file(&victim).unwrap();
    std::os::unix::fs::symlink(&good, &victim).unwrap();
    let mut m = Merge::new(sel.files, Filter::default());
    let mut errors = Vec::new();
    while let Some(r) = m.next() {
        if let Err(e) = r {
            errors.push(e);
        }
    }
    assert!(
        errors
            .iter()
            .any(|e| e.contains("event_type=dns") && e.contains("not read")),
        "{errors:?}"
    );
    std::fs::remove_file(&victim).unwrap();
    std::fs::write(&victim, kept).unwrap();

    // no manifest: every file is still read (their footers give the times)
    std::fs::remove_dir_all(dir.path().join(manifest::MANIFEST)).unwrap();
    for f in ["cut", "text", "foreign", "strange"] {
        std::fs::remove_file(flow.join(format!("{f}.parquet"))).unwrap();
    }
    let sel = select::choose(dir.path(), &Filter::default()).unwrap();
    assert!(!sel.has_manifest);
    assert_eq!(sel.unlisted, 2);
    let (got, problems) = replay(dir.path(), Filter::default());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(got.len(), 10);
}

mod roundtrip {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z\"\\\\\u{1}-\u{1f}é😀 ]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-d]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Equal, integers exactly; an integer the writer widened to a double (it met a
    /// fraction in the same column: documented) equal as a double.
    fn same(g: &Value, w: &Value) -> bool {
        match (g, w) {
            (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
                (Some(x), Some(y)) => x == y,
                _ => a.as_f64() == b.as_f64(),
            },
            (Value::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
            }
            (Value::Object(a), Value::Object(b)) => {
                a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| same(x, y)))
            }
            _ => g == w,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        /// Any rows (types changing from row to row: the writer's JSON text columns) come
        /// back as written, but for null fields.
        #[test]
        fn any_rows_come_back(rows in prop::collection::vec(
            prop::collection::btree_map("[a-e]{1,2}", value(), 1..6), 1..12)) {
            let dir = tempfile::tempdir().unwrap();
            let lines: Vec<String> = rows.iter()
                .map(|m| Value::Object(m.clone().into_iter().collect()).to_string())
                .collect();
            archive(dir.path(), &lines, &[("partition_by", "")]);
            let (got, problems) = replay(dir.path(), Filter::default());
            prop_assert!(problems.is_empty(), "{:?}", problems);
            let want: Vec<Value> = lines.iter()
                .map(|l| without_nulls(&serde_json::from_str(l).unwrap()))
                // a row of nulls only is an empty object
                .collect();
            let got: Vec<Value> = got.iter().map(without_nulls).collect();
            prop_assert!(got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| same(g, w)),
                "got {:?}\nwant {:?}", got, want);
        }
    }
}

/// A conflict found deep inside a row, after the writer had taken part of it (an inner
/// list's elements, an inner object's fields), leaves nothing of that part behind.
#[test]
fn a_conflict_deep_in_a_row_leaves_no_trace_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vec![
        r#"{"a":[[],[false,0]],"n":1}"#.to_string(),
        r#"{"o":{"p":{"a":1,"b":[1,{"x":2}]}},"n":2}"#.to_string(),
        r#"{"o":{"p":{"a":[true],"b":[3]}},"l":[{"m":[1]},{"m":["z"]}],"n":3}"#.to_string(),
    ];
    archive(dir.path(), &lines, &[("partition_by", "")]);
    assert_replays_as_written(dir.path(), &lines);
}

/// More files overlapping in time than may be open at once: every row still comes, once,
/// and the order is event time wherever the open files allow it.
#[test]
fn more_overlapping_files_than_may_be_open_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let files = MAX_OPEN + 6;
    for f in 0..files {
        // file f: rows at seconds f and f + 100 (every file spans the others' times)
        let lines: Vec<String> = [f, f + 100]
            .iter()
            .map(|s| {
                ev(
                    &format!("2025-03-10T09:{:02}:{:02}+0000", s / 60, s % 60),
                    "dns",
                    json!({"n": s}),
                )
            })
            .collect();
        archive(dir.path(), &lines, &[("partition_by", "")]);
    }
    let (got, problems) = replay(dir.path(), Filter::default());
    assert!(problems.is_empty(), "{problems:?}");
    let mut ns: Vec<i64> = got.iter().map(|v| v["n"].as_i64().unwrap()).collect();
    // the first MAX_OPEN files' first rows come in order before any second row
    assert_eq!(ns[..MAX_OPEN], (0..MAX_OPEN as i64).collect::<Vec<_>>()[..]);
    ns.sort();
    let want: Vec<i64> = (0..files as i64).chain(100..100 + files as i64).collect();
    assert_eq!(ns, want);
}

fn schema_types(dir: &Path) -> Vec<(String, String)> {
    let sel = select::choose(dir, &Filter::default()).unwrap();
    let mut out = Vec::new();
    for c in sel.files {
        let b = ParquetRecordBatchReaderBuilder::try_new(File::open(&c.path).unwrap()).unwrap();
        for f in b.schema().fields() {
            let t = match f.data_type() {
                arrow_schema::DataType::Struct(fs) => fs
                    .iter()
                    .map(|g| format!("{}:{}", g.name(), g.data_type()))
                    .collect::<Vec<_>>()
                    .join(","),
                t => t.to_string(),
            };
            out.push((f.name().clone(), t));
        }
    }
    out
}

/// Suricata's timestamps are typed columns (UTC, the offset kept) and come back as the
/// very text they were; a value of another offset makes the column text again, every value
/// still as it was.
#[test]
fn timestamps_are_typed_and_their_text_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..200)
        .map(|i| {
            let t = format!(
                "2025-03-10T10:{:02}:{:02}.{:06}+0100",
                i / 60,
                i % 60,
                i * 4999
            );
            let mut v = json!({"timestamp": t, "event_type": "flow", "n": i,
                "flow": {"start": t, "end": t}});
            if i % 7 == 0 {
                v["flow"].as_object_mut().unwrap().remove("end");
            }
            v.to_string()
        })
        .collect();
    archive(dir.path(), &lines, &[("partition_by", "")]);
    let types = schema_types(dir.path());
    assert!(
        types.contains(&("timestamp".into(), "Timestamp(µs, \"+00:00\")".into())),
        "{types:?}"
    );
    // delta-encoded, without a dictionary
    let file = &select::choose(dir.path(), &Filter::default())
        .unwrap()
        .files[0]
        .path;
    let md = ParquetRecordBatchReaderBuilder::try_new(File::open(file).unwrap())
        .unwrap()
        .metadata()
        .clone();
    let ci = md
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == "timestamp")
        .unwrap();
    let enc = md.row_group(0).column(ci).encodings().collect::<Vec<_>>();
    assert!(
        enc.contains(&parquet::basic::Encoding::DELTA_BINARY_PACKED),
        "{enc:?}"
    );
    assert!(
        !enc.contains(&parquet::basic::Encoding::RLE_DICTIONARY),
        "{enc:?}"
    );
    assert_replays_as_written(dir.path(), &lines);
    // the time range applies to typed times too
    let t = |s: &str| parse_time(s).unwrap();
    let f = Filter {
        from: Some(t("2025-03-10T09:01:00Z")),
        to: Some(t("2025-03-10T09:01:10Z")),
        ..Default::default()
    };
    let (got, _) = replay(dir.path(), f.clone());
    assert_eq!(
        got.iter()
            .map(|v| v["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        (60..70).collect::<Vec<_>>()
    );
    // row groups outside the range are not read (their typed statistics say so)
    let small = tempfile::tempdir().unwrap();
    archive(
        small.path(),
        &lines,
        &[("partition_by", ""), ("row_group_rows", "20")],
    );
    let sel = select::choose(small.path(), &f).unwrap();
    let mut m = Merge::new(sel.files, f.clone());
    let mut ns = Vec::new();
    while let Some(r) = m.next() {
        ns.push(
            serde_json::from_slice::<Value>(r.unwrap()).unwrap()["n"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(ns, (60..70).collect::<Vec<_>>());
    assert_eq!(
        (m.groups_pruned, m.rows),
        (9, 20),
        "one row group of ten read"
    );
    // a footer's statistics of a typed column give the file's times (no manifest)
    let listed = select::choose(dir.path(), &Filter::default())
        .unwrap()
        .files;
    std::fs::remove_dir_all(dir.path().join(manifest::MANIFEST)).unwrap();
    let footers = select::choose(dir.path(), &Filter::default())
        .unwrap()
        .files;
    assert_eq!(
        (footers[0].min_ts, footers[0].max_ts),
        (listed[0].min_ts, listed[0].max_ts)
    );
    assert_eq!(footers[0].min_ts, Some(t("2025-03-10T09:00:00Z")));

    // an offset changes mid-stream (daylight saving): text again, nothing altered
    let dir = tempfile::tempdir().unwrap();
    let mut lines2 = lines[..100].to_vec();
    lines2.push(r#"{"timestamp":"2025-03-10T11:40:00.000000+0200","event_type":"flow","n":100,"flow":{"start":"2025-03-10T11:40:00.000000+0200"}}"#.to_string());
    lines2
        .push(r#"{"timestamp":"2025-03-10T09:40:00.5Z","event_type":"flow","n":101}"#.to_string());
    archive(dir.path(), &lines2, &[("partition_by", "")]);
    let types = schema_types(dir.path());
    assert!(
        types.contains(&("timestamp".into(), "Utf8".into())),
        "{types:?}"
    );
    let (got, problems) = replay(dir.path(), Filter::default());
    assert!(problems.is_empty(), "{problems:?}");
    let mut want: Vec<Value> = lines2
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // in event time (11:40+0200 is 09:40Z, before 09:40:00.5Z)
    want.sort_by_key(|v| manifest::parse_timestamp(v["timestamp"].as_str().unwrap().as_bytes()));
    assert_eq!(got, want);
}
