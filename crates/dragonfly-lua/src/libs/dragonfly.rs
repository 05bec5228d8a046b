//! The `dragonfly` table: routing (`analyze_event`, `output_event`/`forward_event`,
//! `log_event`, `stats_event`, `timer_event`) and utilities (`http_get`, `dnslookup`,
//! `date2epoch`, `echo`, `clock`, `now`).
//!
//! Made here: everything but the two hand-offs that stay inside LuaJIT. `analyze_event` is
//! chain.lua's (it copies the event and queues it for the analyzer) and `output_event` is
//! chain.lua's wrapper around `fast::output_event` (it encodes from the Lua stack into the
//! output's batch); `Runtime::new` attaches both to this table (see `src/wire.rs`).

use std::io::Write;
use std::time::Duration;

use mlua::{Lua, MultiValue, Table, Value};

use crate::json;
use crate::outcome::{with_channel, TagKind, TimerRequest};

/// The longest timer delay accepted: a year, far beyond any analyzer's window, far below what
/// would overflow a clock.
pub const MAX_TIMER_SECS: f64 = 366.0 * 86400.0;

/// Where `dragonfly.echo` lines go (set once by the program; stderr otherwise).
static ECHO: std::sync::OnceLock<EchoFn> = std::sync::OnceLock::new();

type EchoFn = Box<dyn Fn(&str) + Send + Sync>;

/// Send `dragonfly.echo` lines to `f` (e.g. a non-blocking stderr writer) instead of stderr.
pub fn set_echo(f: impl Fn(&str) + Send + Sync + 'static) {
    let _ = ECHO.set(Box::new(f));
}

fn echo_line(line: &str) {
    match ECHO.get() {
        Some(f) => f(line),
        // best effort: a closed or full stderr never stops a script
        None => {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}

fn exact_args(name: &str, args: &MultiValue, n: usize) -> mlua::Result<()> {
    if args.len() != n {
        return Err(mlua::Error::runtime(format!(
            "dragonfly.{name} takes exactly {n} arguments, got {}",
            args.len()
        )));
    }
    Ok(())
}

fn tag_arg(name: &str, v: &Value) -> mlua::Result<String> {
    match v {
        Value::String(s) => Ok(s.to_str()?.to_string()),
        other => Err(mlua::Error::runtime(format!(
            "dragonfly.{name}: the tag must be a string, got {}",
            other.type_name()
        ))),
    }
}

/// Encode `v` as one log line (with `\n`). A Lua string becomes a JSON string.
/// `v` as one JSON line (encoded before the outcome is reached: encoding may allocate in Lua).
fn encode_line(lua: &Lua, name: &str, v: &Value) -> mlua::Result<Vec<u8>> {
    let mut line = json::encode_to_vec(lua, v)
        .map_err(|e| mlua::Error::runtime(format!("dragonfly.{name}: {e}")))?;
    line.push(b'\n');
    Ok(line)
}

/// `dragonfly.timer_event(tag, seconds, value)`: `value` (copied) reaches analyzer `tag`'s
/// `loop()` after `seconds` (0 to one year); an undefined tag is counted as unknown.
fn timer_event(lua: &Lua, args: MultiValue) -> mlua::Result<()> {
    exact_args("timer_event", &args, 3)?;
    let tag = tag_arg("timer_event", &args[0])?;
    let secs = match &args[1] {
        Value::Integer(i) => *i as f64,
        Value::Number(n) => *n,
        other => {
            return Err(mlua::Error::runtime(format!(
                "dragonfly.timer_event: seconds must be a number, got {}",
                other.type_name()
            )))
        }
    };
    if !(0.0..=MAX_TIMER_SECS).contains(&secs) {
        return Err(mlua::Error::runtime(format!(
            "dragonfly.timer_event: seconds must be a number from 0 to {MAX_TIMER_SECS} (one year), got {secs}"
        )));
    }
    let idx = with_channel(lua, |ch| ch.analyzers.get(&tag).copied());
    let Some(analyzer) = idx else {
        with_channel(lua, |ch| ch.outcome.unknown.push((tag, TagKind::Timer)));
        return Ok(());
    };
    // copied before the outcome is reached: the copy runs Lua code
    let value = json::deep_copy(lua, &args[2])?;
    let after = Duration::from_secs_f64(secs);
    let event = crate::wire::running_event(lua);
    let event_clock = with_channel(lua, |ch| {
        ch.outcome.timers.push(TimerRequest {
            analyzer,
            after,
            value,
            event,
        });
        ch.event_clock()
    });
    if event_clock && event > 0 {
        crate::wire::pause_batch(lua);
    }
    Ok(())
}

/// `dragonfly.dnslookup(name)`: the addresses `name` resolves to (each once, in the
/// resolver's order), and the resolver's error when it fails.
fn dnslookup(lua: &Lua, name: String) -> mlua::Result<(Value, Value)> {
    use std::net::ToSocketAddrs;
    let t = lua.create_table()?;
    match crate::watchdog::native_io(|| (name.as_str(), 0u16).to_socket_addrs()) {
        Ok(addrs) => {
            let mut seen = Vec::new();
            for a in addrs {
                let ip = a.ip().to_string();
                if !seen.contains(&ip) {
                    seen.push(ip);
                }
            }
            for (i, ip) in seen.into_iter().enumerate() {
                t.raw_seti(i + 1, ip)?;
            }
            Ok((Value::Table(t), Value::Nil))
        }
        Err(e) => Ok((
            Value::Table(t),
            Value::String(lua.create_string(e.to_string())?),
        )),
    }
}

/// Install the `dragonfly` table as a global.
pub fn install(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;

    m.set(
        "log_event",
        lua.create_function(|lua, args: MultiValue| {
            exact_args("log_event", &args, 1)?;
            let line = encode_line(lua, "log_event", &args[0])?;
            with_channel(lua, |ch| ch.outcome.log.push(&line));
            Ok(())
        })?,
    )?;
    m.set(
        "stats_event",
        lua.create_function(|lua, args: MultiValue| {
            exact_args("stats_event", &args, 1)?;
            let line = encode_line(lua, "stats_event", &args[0])?;
            with_channel(lua, |ch| ch.outcome.stats.push(&line));
            Ok(())
        })?,
    )?;

    m.set("timer_event", lua.create_function(timer_event)?)?;

    m.set(
        "echo",
        lua.create_function(|_, args: MultiValue| {
            let parts: Vec<String> = args
                .iter()
                .map(|v| v.to_string().unwrap_or_else(|_| format!("{v:?}")))
                .collect();
            echo_line(&parts.join("\t"));
            Ok(())
        })?,
    )?;

    // Ours (not in the original): a monotonic wall clock in seconds, for measuring.
    let start = std::time::Instant::now();
    m.set(
        "clock",
        lua.create_function(move |_, ()| Ok(start.elapsed().as_secs_f64()))?,
    )?;

    // Ours: the time in seconds since the epoch — the event time under the event-time clock
    // (engine.clock = "event": the largest timestamp seen, minus the allowed lateness), the
    // system's clock otherwise. What windows and reports should use, so that a replay of a
    // capture gives what the live run gave.
    m.set(
        "now",
        lua.create_function(|lua, ()| {
            let line = crate::wire::running_event(lua);
            let event = with_channel(lua, |ch| {
                line.checked_sub(1)
                    .and_then(|i| ch.event_times.get(i).copied().flatten())
                    .or(ch.event_now)
            });
            Ok(event.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0)
            }))
        })?,
    )?;

    m.set(
        "date2epoch",
        lua.create_function(|_, s: String| {
            date2epoch(&s).ok_or_else(|| {
                mlua::Error::runtime(format!("dragonfly.date2epoch: cannot parse date '{s}'"))
            })
        })?,
    )?;

    m.set("dnslookup", lua.create_function(dnslookup)?)?;

    m.set(
        "http_get",
        lua.create_function(|lua, (url, filename): (String, String)| {
            if lua.app_data_ref::<Sealed>().is_some() {
                return Err(mlua::Error::runtime(format!(
                    "dragonfly.http_get({url}, {filename}): files are written in setup() only; once setup() has run a script writes no file"
                )));
            }
            crate::watchdog::native_io(|| http_get(&url, &filename))
                .map_err(|e| mlua::Error::runtime(format!("dragonfly.http_get({url}): {e}")))
        })?,
    )?;

    lua.globals().set("dragonfly", m.clone())?;
    Ok(m)
}

/// Whole seconds since the epoch of an ISO 8601 / Suricata timestamp
/// (`2026-11-27T21:53:04.123456+0000`): the fraction is dropped (toward the past, as the
/// original's `strptime` did), a time zone offset applied.
pub fn date2epoch(s: &str) -> Option<i64> {
    use chrono::format::{parse, Item, Parsed, StrftimeItems};
    use chrono::{DateTime, NaiveDate};
    /// The formats tried, in order, parsed once: (items, whether they carry an offset).
    static FORMATS: std::sync::LazyLock<Vec<(Vec<Item<'static>>, bool)>> =
        std::sync::LazyLock::new(|| {
            [
                ("%Y-%m-%dT%H:%M:%S%.f%z", true),
                ("%Y-%m-%dT%H:%M:%S%z", true),
                ("%Y-%m-%d %H:%M:%S%.f%z", true),
                ("%Y-%m-%dT%H:%M:%S%.f", false),
                ("%Y-%m-%d %H:%M:%S%.f", false),
                ("%Y-%m-%dT%H:%M:%S", false),
            ]
            .into_iter()
            .map(|(f, zoned)| {
                let items = StrftimeItems::new(f)
                    .parse_to_owned()
                    .expect("a valid format");
                (items, zoned)
            })
            .collect()
        });
    let s = s.trim();
    // as DateTime::parse_from_str and NaiveDateTime::parse_from_str do, without parsing the
    // format again for every date
    let with = |items: &[Item<'static>], zoned: bool| {
        let mut p = Parsed::new();
        parse(&mut p, s, items.iter()).ok()?;
        if zoned {
            p.to_datetime().ok().map(|d| d.timestamp())
        } else {
            p.to_naive_datetime_with_offset(0)
                .ok()
                .map(|d| d.and_utc().timestamp())
        }
    };
    let (zoned, naive) = FORMATS.split_at(3);
    for (items, z) in zoned {
        if let Some(t) = with(items, *z) {
            return Some(t);
        }
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.timestamp());
    }
    for (items, z) in naive {
        if let Some(t) = with(items, *z) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp())
}

/// Longest a download may take, connection included.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest download accepted (a feed larger than this is an error, not a full disk).
pub const HTTP_MAX_BYTES: u64 = 512 << 20;

/// The HTTP client of `dragonfly.http_get`: `https://` verified against the system's roots
/// (`/etc/ssl/certs`, or `SSL_CERT_FILE`/`SSL_CERT_DIR`), a timeout for the whole download.
fn http_agent() -> &'static ureq::Agent {
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    AGENT.get_or_init(|| {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("loading the system's TLS roots: {e}");
        }
        let roots: Vec<Certificate<'static>> = found
            .certs
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        if roots.is_empty() {
            tracing::warn!("no TLS root certificates found: https downloads will fail (install ca-certificates, or set SSL_CERT_FILE)");
        }
        let config = ureq::Agent::config_builder()
            .tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::Specific(std::sync::Arc::new(roots)))
                    .build(),
            )
            .timeout_global(Some(HTTP_TIMEOUT))
            .build();
        ureq::Agent::new_with_config(config)
    })
}

/// Present in a runtime's app data once every `setup()` has run (the scripts are sealed).
pub(crate) struct Sealed;

/// Download `url` to `filename`, through `<filename>.part` created exclusively and never
/// through a link planted at its name (dragonfly_event::fsx), renamed over `filename`.
fn http_get(url: &str, filename: &str) -> Result<(), String> {
    let mut resp = http_agent().get(url).call().map_err(|e| e.to_string())?;
    let mut reader = resp.body_mut().with_config().limit(HTTP_MAX_BYTES).reader();
    let tmp = format!("{filename}.part");
    let mut f = dragonfly_event::fsx::create_exclusive(std::path::Path::new(&tmp), 0o644)
        .map_err(|e| e.to_string())?;
    if let Err(e) = std::io::copy(&mut reader, &mut f) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.to_string());
    }
    std::fs::rename(&tmp, filename).map_err(|e| format!("{filename}: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::date2epoch;

    #[test]
    fn parses_suricata_timestamps() {
        assert_eq!(
            date2epoch("2026-11-27T21:53:04.123456+0000"),
            Some(1795816384)
        );
        // whole seconds: the fraction is dropped, never rounded up (lua-api.md)
        assert_eq!(
            date2epoch("2026-11-27T21:53:04.999999+0000"),
            Some(1795816384)
        );
        assert_eq!(date2epoch("1969-12-31T23:59:59.5Z"), Some(-1));
        assert_eq!(date2epoch("2026-11-27T22:53:04+0100"), Some(1795816384));
        assert_eq!(date2epoch("2026-11-27T21:53:04Z"), Some(1795816384));
        assert_eq!(date2epoch("1970-01-02"), Some(86400));
        assert_eq!(date2epoch("yesterday"), None);
    }

    /// The parser before the formats were parsed once: each format through chrono's
    /// `parse_from_str`.
    fn reference(s: &str) -> Option<i64> {
        use chrono::{DateTime, NaiveDate, NaiveDateTime};
        let s = s.trim();
        for fmt in [
            "%Y-%m-%dT%H:%M:%S%.f%z",
            "%Y-%m-%dT%H:%M:%S%z",
            "%Y-%m-%d %H:%M:%S%.f%z",
        ] {
            if let Ok(d) = DateTime::parse_from_str(s, fmt) {
                return Some(d.timestamp());
            }
        }
        if let Ok(d) = DateTime::parse_from_rfc3339(s) {
            return Some(d.timestamp());
        }
        for fmt in [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S",
        ] {
            if let Ok(d) = NaiveDateTime::parse_from_str(s, fmt) {
                return Some(d.and_utc().timestamp());
            }
        }
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc().timestamp())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5_000))]
        /// The same answer as the reference on dates in every layout it takes (and broken
        /// ones): separators, fractions, offsets, out-of-range fields, stray text.
        #[test]
        fn parses_what_the_reference_parsed(
            y in 1900i32..2100, mo in 0u32..14, d in 0u32..33, h in 0u32..25, mi in 0u32..61,
            sec in 0u32..61, frac in proptest::option::of("[0-9]{1,9}"),
            sep in proptest::sample::select(vec!["T", " ", "t"]),
            zone in proptest::sample::select(vec!["", "Z", "+0000", "+0130", "-0800", "+01:00", "z"]),
            date_only in proptest::bool::weighted(0.1),
            pad in proptest::sample::select(vec!["", " ", "x", "\n"]),
        ) {
            let s = if date_only {
                format!("{y:04}-{mo:02}-{d:02}{pad}")
            } else {
                let f = frac.map(|f| format!(".{f}")).unwrap_or_default();
                format!("{pad}{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{sec:02}{f}{zone}")
            };
            proptest::prop_assert_eq!(date2epoch(&s), reference(&s), "{:?}", s);
        }
    }
}
