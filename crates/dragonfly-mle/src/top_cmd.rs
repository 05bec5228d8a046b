//! `dragonfly-mle top`: the live page's numbers in a terminal, for a sensor with no browser.
//! Every `--interval` seconds it reads `/api/stats` from the running engine's HTTP listener
//! (`--http ADDR`, else `engine.http` of ROOT's config.lua) and shows each node's rate, total
//! and errors, every edge events took with its rate (tags that name nothing marked), and the
//! engine's uptime, version, store and Lua memory. On a terminal the screen is redrawn; piped,
//! each refresh is printed after the last. `--once`: one table (rates over one interval),
//! then exit. Exit 0 (`--once`, or interrupted), 1 when the engine cannot be reached or stops
//! answering, 2 when config.lua cannot be read for the address.
//!
//! Tags are shown escaped (a script can make an unknown tag from event fields).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

/// What `top` shows (the command's arguments).
#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// Seconds between refreshes (rates are over this interval).
    #[arg(long, value_name = "SECONDS", default_value = "2")]
    pub interval: f64,
    /// Show one table (after one interval) and exit.
    #[arg(long)]
    pub once: bool,
    /// The engine's HTTP listener (host:port); default: engine.http in ROOT's config.lua.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
}

/// Run it; the exit status.
pub fn run(root: &Path, args: &TopArgs) -> u8 {
    let addr = match crate::client::address(root, args.http.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dragonfly-mle: top: {e:#}");
            return 2;
        }
    };
    if !(0.1..=3600.0).contains(&args.interval) {
        eprintln!("dragonfly-mle: top: --interval must be between 0.1 and 3600 seconds");
        return 2;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dragonfly-mle: top: {e}");
            return 1;
        }
    };
    let terminal = std::io::stdout().is_terminal();
    let every = Duration::from_secs_f64(args.interval);
    let result: anyhow::Result<()> = rt.block_on(async {
        let mut prev = crate::client::get_json(&addr, "/api/stats").await?;
        let mut at = Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let now = crate::client::get_json(&addr, "/api/stats")
                .await
                .map_err(|e| anyhow::anyhow!("the engine stopped answering: {e:#}"))?;
            let secs = at.elapsed().as_secs_f64();
            at = Instant::now();
            let text = table(&prev, &now, secs);
            let mut out = std::io::stdout().lock();
            let shown = if terminal && !args.once {
                // home, clear: a redrawn screen
                write!(out, "\x1b[H\x1b[2J{text}")
            } else {
                writeln!(out, "{text}")
            };
            if shown.and_then(|_| out.flush()).is_err() || args.once {
                return Ok(());
            }
            prev = now;
        }
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dragonfly-mle: top: {e:#}");
            1
        }
    }
}

/// A name as shown: escaped like a tap's lines, without the quotes.
fn name(s: &str) -> String {
    let quoted = Value::from(s).to_string();
    dragonfly_engine::tap::escape(&quoted[1..quoted.len() - 1])
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn rate(now: u64, prev: u64, secs: f64) -> f64 {
    now.saturating_sub(prev) as f64 / secs.max(1e-3)
}

fn thousands(x: u64) -> String {
    let s = x.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

/// The table for two stats records `secs` apart.
pub fn table(prev: &Value, now: &Value, secs: f64) -> String {
    let mut t = String::new();
    let up = n(&now["uptime_s"]);
    let ops = |r: &Value, k: &str| n(&r["operations"][k]);
    t.push_str(&format!(
        "dragonfly-mle {}  up {}h{:02}m{:02}s  in {:.0} ev/s  out {:.0} ev/s  errors {}  dead letters {}  reloads {}\n",
        name(now["version"].as_str().unwrap_or("?")),
        up / 3600,
        up / 60 % 60,
        up % 60,
        rate(ops(now, "input"), ops(prev, "input"), secs),
        rate(ops(now, "output"), ops(prev, "output"), secs),
        thousands(n(&now["errors"])),
        thousands(n(&now["dead_letters"])),
        n(&now["reloads"]),
    ));
    let store = &now["store"];
    let mut line = format!("store {}", name(store["backend"].as_str().unwrap_or("-")));
    if let Some(k) = store["keys"].as_u64() {
        line.push_str(&format!(", {} keys", thousands(k)));
    }
    if let Some(b) = store["memory_bytes"].as_u64() {
        line.push_str(&format!(", {}", mib(b)));
    }
    if let Some(w) = now["workers"].as_object() {
        let lua: Vec<String> = w
            .iter()
            .map(|(k, v)| format!("w{} {}", name(k), mib(n(&v["lua_bytes"]))))
            .collect();
        line.push_str(&format!("  Lua {}", lua.join(", ")));
    }
    line.push_str(&format!("  rss {}\n\n", mib(n(&now["rss_bytes"]))));
    t.push_str(&line);

    t.push_str(&format!(
        "{:<40} {:>10} {:>12} {:>8}\n",
        "NODE", "EV/S", "TOTAL", "ERRORS"
    ));
    let mut row = |id: String, total: &dyn Fn(&Value) -> u64, errors: u64, note: String| {
        let (a, b) = (total(now), total(prev));
        t.push_str(&format!(
            "{:<40} {:>10.1} {:>12} {:>8}{}\n",
            id,
            rate(a, b, secs),
            thousands(a),
            thousands(errors),
            note
        ));
    };
    let empty = serde_json::Map::new();
    for (tag, i) in now["inputs"].as_object().unwrap_or(&empty) {
        let key = tag.clone();
        let state = i["state"].as_str().map(|s| format!("  {}", name(s)));
        row(
            format!("input:{}", name(tag)),
            &|r: &Value| n(&r["inputs"][&key]["lines"]),
            n(&i["io_errors"]) + n(&i["oversized"]),
            state.unwrap_or_default(),
        );
        row(
            format!("filter:{}", name(tag)),
            &|r: &Value| n(&r["inputs"][&key]["events"]),
            n(&i["lua_errors"]) + n(&i["malformed"]),
            String::new(),
        );
    }
    for (tag, a) in now["analyzers"].as_object().unwrap_or(&empty) {
        let key = tag.clone();
        row(
            format!("analyzer:{}", name(tag)),
            &|r: &Value| n(&r["analyzers"][&key]["events"]),
            n(&a["lua_errors"]),
            String::new(),
        );
    }
    for (tag, o) in now["outputs"].as_object().unwrap_or(&empty) {
        let key = tag.clone();
        row(
            format!("output:{}", name(tag)),
            &|r: &Value| n(&r["outputs"][&key]["events"]),
            n(&o["errors"]) + n(&o["dropped"]),
            String::new(),
        );
    }

    t.push_str(&format!(
        "\n{:<60} {:>10} {:>12}\n",
        "EDGE", "EV/S", "TOTAL"
    ));
    let before = |from: &str, to: &str| {
        prev["edges"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["from"] == from && e["to"] == to))
            .map_or(0, |e| n(&e["events"]))
    };
    for e in now["edges"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let (from, to) = (
            e["from"].as_str().unwrap_or("?"),
            e["to"].as_str().unwrap_or("?"),
        );
        let total = n(&e["events"]);
        let note = if to.starts_with("unknown-") {
            "  DROPPED: no such tag"
        } else {
            ""
        };
        t.push_str(&format!(
            "{:<60} {:>10.1} {:>12}{}\n",
            format!("{} > {}", name(from), name(to)),
            rate(total, before(from, to), secs),
            thousands(total),
            note
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_rates_totals_edges_and_nothing_a_terminal_would_act_on() {
        let prev = serde_json::json!({
            "operations": {"input": 100, "output": 50},
            "inputs": {"eve": {"lines": 100, "events": 100}},
            "analyzers": {"dns": {"events": 40}},
            "outputs": {"alerts": {"events": 50}},
            "edges": [{"from": "filter:eve", "to": "analyzer:dns", "events": 40}],
        });
        let now = serde_json::json!({
            "version": "0.1.0", "uptime_s": 3725, "errors": 2, "dead_letters": 1, "reloads": 1,
            "operations": {"input": 300, "output": 150},
            "inputs": {"eve": {"lines": 300, "events": 300, "state": "following", "io_errors": 0}},
            "analyzers": {"dns": {"events": 140, "lua_errors": 2}},
            "outputs": {"alerts": {"events": 150}},
            "store": {"backend": "embedded", "keys": 12345, "memory_bytes": 2097152},
            "workers": {"0": {"lua_bytes": 1048576}},
            "edges": [
                {"from": "filter:eve", "to": "analyzer:dns", "events": 140},
                {"from": "analyzer:dns", "to": "unknown-output:al\u{1b}[2Jrets\u{9b}", "events": 7},
            ],
        });
        let t = table(&prev, &now, 2.0);
        assert!(t.contains("up 1h02m05s"), "{t}");
        assert!(t.contains("in 100 ev/s"), "{t}");
        assert!(t.contains("12,345 keys, 2.0 MiB"), "{t}");
        let dns = t.lines().find(|l| l.starts_with("analyzer:dns")).unwrap();
        assert!(
            dns.contains(" 50.0 ") && dns.contains(" 140 ") && dns.ends_with(" 2"),
            "{dns}"
        );
        let edge = t
            .lines()
            .find(|l| l.starts_with("filter:eve > analyzer:dns"))
            .unwrap();
        assert!(edge.contains(" 50.0 "), "{edge}");
        let unknown = t.lines().find(|l| l.contains("unknown-output")).unwrap();
        assert!(unknown.ends_with("DROPPED: no such tag"), "{unknown}");
        assert!(
            unknown.contains("\\u001b[2J") && unknown.contains("\\u009b"),
            "{unknown}"
        );
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t}");
    }
}
