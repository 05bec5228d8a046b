//! The URI parsers (every input and output scheme, their query strings and `options`) on
//! hostile text: a spec or an error, never a panic. scripts/fuzz runs it longer.

use proptest::prelude::*;

fn uri() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "file", "zfile", "tail", "ipc", "unix", "redis", "kafka", "nats", "syslog", "", "FILE",
    ]);
    let rest = prop_oneof![
        ".{0,60}",
        "[a-z0-9.]{0,12}(:[0-9]{0,7})?(/[a-z:]{0,10})?(\\?[a-z_]{0,8}=[a-z0-9-]{0,8}(&[a-z_]{0,8}=.{0,6}){0,3})?",
        "(/[a-z<]{0,6}){0,4}<?",
    ];
    (
        scheme,
        prop::sample::select(vec!["://", ":/", "", ":///"]),
        rest,
    )
        .prop_map(|(s, sep, r)| format!("{s}{sep}{r}"))
}

fn options() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![
                "checkpoint",
                "mode",
                "owner",
                "group",
                "buffer_mb",
                "client.id",
                "bootstrap.servers",
                "x",
            ])
            .prop_map(str::to_string),
            ".{0,12}",
        ),
        0..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(500),
        ..ProptestConfig::default()
    })]
    #[test]
    fn any_uri_parses_or_is_an_error(u in uri(), opts in options()) {
        let _ = dragonfly_io::sources::parse(&u, &[]);
        let _ = dragonfly_io::sources::parse(&u, &opts);
        let _ = dragonfly_io::sinks::parse(&u, std::path::Path::new("/tmp/logs"), &[]);
        let _ = dragonfly_io::sinks::parse(&u, std::path::Path::new("/tmp/logs"), &opts);
    }
}
