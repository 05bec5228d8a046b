use super::*;
use std::collections::HashMap;

/// A keyspace of models only, plus "other" keys.
#[derive(Default)]
pub struct Mem {
    pub models: HashMap<Vec<u8>, Model>,
    pub other: Vec<Vec<u8>>,
}

impl Keyspace for Mem {
    fn kind(&mut self, key: &[u8]) -> Kind {
        if self.other.iter().any(|k| k == key) {
            return Kind::Other;
        }
        self.models.get(key).map_or(Kind::Missing, Kind::of)
    }
    fn read<R>(&mut self, key: &[u8], f: impl FnOnce(&Model) -> R) -> Option<R> {
        self.models.get(key).map(f)
    }
    fn put(&mut self, key: &[u8], model: Model) {
        self.models.insert(key.to_vec(), model);
    }
    fn delete(&mut self, key: &[u8]) {
        self.models.remove(key);
    }
}

fn run(ks: &mut Mem, line: &str) -> MlReply {
    let args: Vec<Vec<u8>> = line.split(' ').map(|s| s.as_bytes().to_vec()).collect();
    execute(ks, &args).expect("an ML command")
}

fn d(v: &MlReply) -> String {
    match v {
        MlReply::Double(x) => crate::numfmt::fmt_g(*x, 17),
        other => panic!("not a double: {other:?}"),
    }
}

#[test]
fn spec_examples() {
    let mut ks = Mem::default();
    assert_eq!(run(&mut ks, "ML.LINREG.SET linear 2 3 4 5"), MlReply::Ok);
    assert_eq!(d(&run(&mut ks, "ML.LINREG.PREDICT linear 1 1 1")), "14");
    assert_eq!(run(&mut ks, "ML.LOGREG.SET logistic 0 2 2"), MlReply::Ok);
    assert_eq!(
        d(&run(&mut ks, "ML.LOGREG.PREDICT logistic -3 1")),
        "0.017986209962091559"
    );
    run(&mut ks, "ML.MATRIX.SET a 2 3 1 2 5 3 4 6");
    run(&mut ks, "ML.MATRIX.SET b 3 2 1 2 3 4 7 1");
    assert_eq!(run(&mut ks, "ML.MATRIX.MULTIPLY a b c"), MlReply::Ok);
    assert_eq!(
        run(&mut ks, "ML.MATRIX.GET c"),
        MlReply::Array(vec![
            MlReply::Integer(2),
            MlReply::Integer(2),
            MlReply::Double(42.0),
            MlReply::Double(15.0),
            MlReply::Double(57.0),
            MlReply::Double(28.0)
        ])
    );
    assert_eq!(run(&mut ks, "ML.KMEANS.SET k 2 3 1 1 2 2 5 4"), MlReply::Ok);
    assert_eq!(
        run(&mut ks, "ML.KMEANS.PREDICT k 1 3 5"),
        MlReply::Integer(1)
    );
}

#[test]
fn readme_forest_example() {
    let mut ks = Mem::default();
    assert_eq!(
        run(
            &mut ks,
            "ML.FOREST.ADD f1 0 . numeric 1 0.1 .l leaf 1 .r leaf 0"
        ),
        MlReply::Ok
    );
    assert_eq!(
        run(
            &mut ks,
            "ML.FOREST.ADD f1 1 . numeric 1 0.1 .l leaf 1 .r leaf 0"
        ),
        MlReply::Ok
    );
    assert_eq!(
        run(
            &mut ks,
            "ML.FOREST.ADD f1 2 . numeric 1 0.1 .l leaf 0 .r leaf 1"
        ),
        MlReply::Ok
    );
    assert_eq!(
        d(&run(&mut ks, "ML.FOREST.RUN f1 1:0.01 CLASSIFICATION")),
        "1"
    );
    assert_eq!(
        d(&run(&mut ks, "ML.FOREST.RUN f1 1:0.2 CLASSIFICATION")),
        "0"
    );
    assert_eq!(
        d(&run(&mut ks, "ML.FOREST.RUN f1 1:0.01 REGRESSION")),
        "0.66666666666666663"
    );
    // STATS votes, categoric splits, case-insensitive prefixes and paths
    run(
        &mut ks,
        "ML.FOREST.ADD g 0 . CAT color 1:3 .L LEAF 0 STATS 8:2 .R LEAF 1 STATS 1:9",
    );
    assert_eq!(d(&run(&mut ks, "ML.FOREST.RUN g color:3")), "0");
    assert_eq!(d(&run(&mut ks, "ML.FOREST.RUN g color:2")), "1");
    assert_eq!(d(&run(&mut ks, "ML.FOREST.RUN g other:1")), "1");
}

#[test]
fn whitespace_arguments_are_ignored_by_forest_add() {
    // what command_line makes of a model line ending in " \n"
    let mut ks = Mem::default();
    let args: Vec<Vec<u8>> = [
        "ML.FOREST.ADD",
        "f",
        "0",
        ".",
        "NUMERIC",
        "len",
        "10",
        ".l",
        "LEAF",
        "0",
        ".r",
        "LEAF",
        "1",
        "\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    assert_eq!(execute(&mut ks, &args), Some(MlReply::Ok));
    assert_eq!(d(&run(&mut ks, "ML.FOREST.RUN f len:20")), "1");
    assert_eq!(d(&run(&mut ks, "ML.FOREST.RUN f len:5")), "0");
}

#[test]
fn errors() {
    let mut ks = Mem::default();
    ks.other.push(b"str".to_vec());
    let wt = MlReply::Error(WRONGTYPE.into());
    assert_eq!(run(&mut ks, "ML.LINREG.PREDICT nope 1"), wt);
    assert_eq!(run(&mut ks, "ML.LINREG.SET str 1 2"), wt);
    assert_eq!(run(&mut ks, "ML.FOREST.RUN str 1:1"), wt);
    assert_eq!(
        run(&mut ks, "ML.LINREG.SET x 1"),
        MlReply::Error("ERR wrong number of arguments for 'ml.linreg.set' command".into())
    );
    assert_eq!(
        run(&mut ks, "ML.MATRIX.GET"),
        MlReply::Error("ERR wrong number of arguments for 'ml.matrix.get' command".into())
    );
    run(&mut ks, "ML.LINREG.SET r 1 2 3");
    assert!(
        matches!(run(&mut ks, "ML.LINREG.PREDICT r 1 2 3"), MlReply::Error(e) if e.contains("wrong number of features"))
    );
    assert_eq!(run(&mut ks, "ML.MATRIX.GET r"), wt);
    // incomplete tree: the key goes away
    run(
        &mut ks,
        "ML.FOREST.ADD f 0 . NUMERIC a 1 .l LEAF 0 .r LEAF 1",
    );
    assert_eq!(
        run(&mut ks, "ML.FOREST.ADD f 1 . NUMERIC a 1 .l LEAF 0"),
        MlReply::Error("Tree contains null nodes".into())
    );
    assert_eq!(ks.kind(b"f"), Kind::Missing);
    assert_eq!(
        run(&mut ks, "ML.FOREST.ADD f 0 .x LEAF 0 .r LEAF 1"),
        MlReply::Error("Tree node path containes wrong characters, should be 'r' or 'l'".into())
    );
    assert_eq!(
        run(&mut ks, "ML.FOREST.ADD f 0 . SPLIT a 1 .r LEAF 1"),
        MlReply::Error("Wrong node type , should be 'NUMERIC', 'CATEGORIC' or 'LEAF'".into())
    );
    assert_eq!(
        run(&mut ks, "ML.FOREST.ADD f 3 . LEAF 1 . LEAF 1"),
        MlReply::Error("ERR Generic".into())
    );
    run(&mut ks, "ML.FOREST.ADD f 0 . LEAF 1 . LEAF 1");
    assert!(
        matches!(run(&mut ks, "ML.FOREST.RUN f bad"), MlReply::Error(e) if e.starts_with("Feature vector parsing failed"))
    );
    assert_eq!(
        run(&mut ks, "ML.MATRIX.SET m 0 2"),
        MlReply::Error("Matrix dimentions should be positive".into())
    );
    assert!(
        matches!(run(&mut ks, "ML.MATRIX.SET m 2 2 1 2 3"), MlReply::Error(e) if e.contains("needs 4, got 3"))
    );
    run(&mut ks, "ML.MATRIX.SET a 2 2 1 2 3 4");
    run(&mut ks, "ML.MATRIX.SET b 3 1 1 2 3");
    assert_eq!(
        run(&mut ks, "ML.MATRIX.MULTIPLY a b c"),
        MlReply::Error("Wrong matrix dimentions b:rows should equal a:cols".into())
    );
    assert_eq!(
        run(&mut ks, "ML.MATRIX.ADD a b c"),
        MlReply::Error("Added matrices dimentions should be equal".into())
    );
    assert!(
        matches!(run(&mut ks, "ML.KMEANS.SET k 2 2 1 2 3"), MlReply::Error(e) if e.contains("k-means"))
    );
    assert_eq!(
        run(&mut ks, "ML.LINREG.SET r x 1"),
        MlReply::Error("ERR value is not a valid float".into())
    );
}

#[test]
fn encoding_round_trips() {
    let mut ks = Mem::default();
    run(
        &mut ks,
        "ML.FOREST.ADD f 0 . CAT c 1:2 .l LEAF 0 STATS 3:1 .r NUMERIC n 2.5 .rl LEAF 1 .rr LEAF 2",
    );
    run(&mut ks, "ML.LINREG.SET r 1 2 3");
    run(&mut ks, "ML.MATRIX.SET m 1 2 0.1 0.2");
    run(&mut ks, "ML.KMEANS.SET k 1 2 3 4");
    for m in ks.models.values() {
        assert_eq!(
            &crate::encode::decode(&crate::encode::encode(m)).unwrap(),
            m
        );
    }
}

#[test]
fn sklearn_exports_become_commands() {
    let json = r#"{"type":"random_forest","mode":"classification","feature_names":["len","ent"],
      "trees":[{"children_left":[1,-1,-1],"children_right":[2,-1,-1],"feature":[1,-2,-2],
                "threshold":[3.5,-2,-2],"value":[[10,10],[9,1],[1,9]]}]}"#;
    let cmds = crate::import::commands(json, "dga").unwrap();
    let mut ks = Mem::default();
    for c in &cmds[1..] {
        assert_eq!(execute(&mut ks, c), Some(MlReply::Ok), "{c:?}");
    }
    assert_eq!(d(&run(&mut ks, "ML.FOREST.RUN dga ent:4,len:1")), "1");
    assert_eq!(d(&run(&mut ks, "ML.FOREST.RUN dga ent:3,len:1")), "0");
    let cmds = crate::import::commands(
        r#"{"type":"logistic_regression","intercept":0,"coefficients":[2,2]}"#,
        "lr",
    )
    .unwrap();
    execute(&mut ks, &cmds[1]);
    assert_eq!(
        d(&run(&mut ks, "ML.LOGREG.PREDICT lr -3 1")),
        "0.017986209962091559"
    );
}
