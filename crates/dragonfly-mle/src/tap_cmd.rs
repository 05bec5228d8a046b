//! `dragonfly-mle tap`: watch sampled events pass a stage of a running engine, through its
//! HTTP listener's `GET /api/tap` (dragonfly_engine::tap has the behaviour and the limits).
//!
//! The engine is found at `--http ADDR`, else at `engine.http` of ROOT's config.lua. The
//! lines are printed as they come, escaped again here whatever the server sent (a terminal
//! must never be handed an event's control characters): `text` shows the time, the stage and
//! the event on one line; `json` the tap's JSON lines as they are. Exit 0 when `--limit` events
//! came or the engine ended the stream, 1 when the engine cannot be reached or refuses the
//! tap (its message printed), 2 when config.lua cannot be read for the address.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use http_body_util::BodyExt;

/// How `dragonfly-mle tap` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `TIME STAGE:TAG EVENT`, one event per line.
    Text,
    /// The tap's JSON lines as the engine sends them.
    Json,
}

/// What to tap (the command's arguments).
#[derive(clap::Args, Debug)]
pub struct TapArgs {
    /// The stages: `KIND:TAG` (input:eve, analyzer:dns, output:alerts), a KIND (every stage of it) or a TAG (every stage with it); repeat for several; none: every stage.
    #[arg(long, value_name = "STAGE")]
    pub stage: Vec<String>,
    /// Only events whose FIELD (a dotted path: dns.rrname) has VALUE (strings exactly, numbers by value); repeat: all must match.
    #[arg(long, value_name = "FIELD=VALUE")]
    pub filter: Vec<String>,
    /// Stop after N events.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Most events per second (1 to 1000; the engine's default 10).
    #[arg(long, value_name = "N")]
    pub rate: Option<u32>,
    /// The engine's HTTP listener (host:port); default: engine.http in ROOT's config.lua.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// text or json.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Run the tap; the exit status.
pub fn run(root: &Path, args: &TapArgs) -> u8 {
    let addr = match crate::client::address(root, args.http.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dragonfly-mle: tap: {e:#}");
            return 2;
        }
    };
    match stream(&addr, args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dragonfly-mle: tap: {e:#}");
            1
        }
    }
}

/// The request's path and query.
fn path(args: &TapArgs) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for s in &args.stage {
        q.append_pair("stage", s);
    }
    for f in &args.filter {
        q.append_pair("filter", f);
    }
    if let Some(r) = args.rate {
        q.append_pair("rate", &r.to_string());
    }
    if let Some(n) = args.limit {
        q.append_pair("limit", &n.to_string());
    }
    format!("/api/tap?{}", q.finish())
}

fn stream(addr: &str, args: &TapArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut res = crate::client::request(addr, &path(args)).await?;
        if !res.status().is_success() {
            let status = res.status();
            let body = res.into_body().collect().await.map(|b| b.to_bytes());
            let msg = body
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| status.to_string());
            bail!("the engine refused the tap: {msg}");
        }
        let mut pending: Vec<u8> = Vec::new();
        let mut left = args.limit;
        let stdout = std::io::stdout();
        while let Some(frame) = res.frame().await {
            let frame = frame.context("the stream broke")?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            pending.extend_from_slice(data);
            while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim();
                // an empty line is the engine's heartbeat
                if line.is_empty() {
                    continue;
                }
                let shown = show(line, args.format);
                let mut out = stdout.lock();
                if writeln!(out, "{shown}").and_then(|_| out.flush()).is_err() {
                    // stdout closed (piped into head): done
                    return Ok(());
                }
                if let Some(n) = left.as_mut() {
                    *n -= 1;
                    if *n == 0 {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    })
}

/// One tap line as printed: escaped whatever came.
fn show(line: &str, format: Format) -> String {
    let v: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        // not the engine's JSON: shown as a JSON string, escaped
        Err(_) => return dragonfly_engine::tap::escape(&serde_json::Value::from(line).to_string()),
    };
    let text = match format {
        Format::Json => v.to_string(),
        Format::Text => {
            let s = |k: &str| v[k].as_str().unwrap_or("?").to_string();
            let body = match (v.get("event"), v.get("text")) {
                (Some(e), _) => e.to_string(),
                (None, Some(t)) if v.get("cut").is_some() => {
                    format!("(cut at {} bytes) {}", v["cut"], t)
                }
                (None, Some(t)) => format!("(not JSON) {t}"),
                (None, None) => v.to_string(),
            };
            let tag = serde_json::Value::from(s("tag")).to_string();
            let tag = tag.trim_matches('"');
            format!("{} {}:{} {}", s("time"), s("stage"), tag, body)
        }
    };
    dragonfly_engine::tap::escape(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_shown_escaped_whatever_the_server_sent() {
        let line = r#"{"time":"2026-12-07T00:00:00Z","stage":"analyzer","tag":"d\u001b[2Jns","event":{"q":"a\u009bb\u202ec"}}"#;
        let text = show(line, Format::Text);
        assert!(
            text.starts_with("2026-12-07T00:00:00Z analyzer:d"),
            "{text}"
        );
        assert!(!text.chars().any(|c| c.is_control()), "{text}");
        assert!(
            text.contains("\\u009b") && text.contains("\\u202e"),
            "{text}"
        );
        let raw = "not json \u{1b}[31m\u{9b}";
        let shown = show(raw, Format::Json);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown}");
        let cut = r#"{"time":"t","stage":"output","tag":"o","cut":70000,"text":"abc"}"#;
        assert!(show(cut, Format::Text).contains("(cut at 70000 bytes)"));
        let bad = r#"{"time":"t","stage":"input","tag":"eve","malformed":true,"text":"x"}"#;
        assert!(show(bad, Format::Text).contains("(not JSON)"));
    }

    #[test]
    fn the_query_carries_every_argument_encoded() {
        let args = TapArgs {
            stage: vec!["analyzer:dns".into(), "output:a b".into()],
            filter: vec!["dns.rrname=x&y=z".into()],
            limit: Some(5),
            rate: Some(100),
            http: None,
            format: Format::Text,
        };
        let p = path(&args);
        assert_eq!(
            p,
            "/api/tap?stage=analyzer%3Adns&stage=output%3Aa+b&filter=dns.rrname%3Dx%26y%3Dz&rate=100&limit=5"
        );
    }
}
