//! `redis://HOST:PORT/KEY?mode=list|rpush|channel` — the shapes of Suricata's `redis` eve
//! output, for inputs and outputs.

use crate::options::{OptKind, OptionDoc, Opts};
use crate::uri::UriError;

// The query parameters of `redis://` URIs.
const MODE: OptionDoc = OptionDoc {
    name: "mode",
        kind: OptKind::Choice(&["list", "lpush", "rpush", "channel", "publish"]),
        default: "list",
        doc: "Suricata's redis output modes: list (= lpush: LPUSH, consumed with BRPOP), rpush (consumed with BLPOP), channel (= publish: PUBLISH, SUBSCRIBE)",
};

const CONSUMER: OptionDoc = OptionDoc {
    name: "consumer",
        kind: OptKind::Name,
        default: "",
        doc: "list modes: at-least-once through the processing list KEY:processing:NAME (one name per engine)",
};

/// The query parameters an input's URI takes.
pub const INPUT_QUERY: &[OptionDoc] = &[MODE, CONSUMER];
/// The query parameters an output's URI takes.
pub const OUTPUT_QUERY: &[OptionDoc] = &[MODE];
/// Every query parameter of the form (inputs' and outputs').
pub const QUERY: &[OptionDoc] = &[MODE, CONSUMER];

/// How events sit in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    /// Suricata `mode: list`: producers LPUSH, the consumer pops the other end (BRPOP): FIFO.
    List,
    /// Suricata `mode: rpush`: producers RPUSH, the consumer uses BLPOP.
    Rpush,
    /// Suricata `mode: channel`/`publish`: PUBLISH / SUBSCRIBE (lost when nobody listens).
    Channel,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// A parsed `redis://` URI.
pub struct RedisUri {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The list or channel.
    pub key: String,
    /// How the list or channel is used.
    pub mode: RedisMode,
    /// Inputs, list modes: `consumer=NAME` turns on at-least-once delivery through the
    /// processing list `KEY:processing:NAME` (one name per engine).
    pub consumer: Option<String>,
}

impl RedisUri {
    /// Parse the part after `redis://`. Every query parameter of the form is taken ([`QUERY`]).
    pub fn parse(uri: &str, rest: &str) -> Result<Self, UriError> {
        Self::parse_with(uri, rest, QUERY)
    }

    /// As [`RedisUri::parse`], taking only the query parameters in `rows` (an input's or an
    /// output's: one meant for the other is refused, naming the ones this takes).
    pub fn parse_with(uri: &str, rest: &str, rows: &'static [OptionDoc]) -> Result<Self, UriError> {
        let n = crate::uri::net(uri, rest, "key", "redis://HOST:PORT/KEY")?;
        let (host, port) = match n.addr.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), crate::uri::port(uri, p)?),
            None => (n.addr.to_string(), 6379),
        };
        let key = n.path;
        let q = Opts::parse_query(uri, rows, &n.query, "")?;
        let mode = match q.text("mode").as_deref() {
            Some("rpush") => RedisMode::Rpush,
            Some("channel" | "publish") => RedisMode::Channel,
            _ => RedisMode::List,
        };
        let consumer = q.text("consumer");
        Ok(Self {
            host,
            port,
            key: key.to_string(),
            mode,
            consumer,
        })
    }

    /// The list holding what this consumer took and has not finished.
    pub fn processing_key(&self) -> Option<String> {
        self.consumer
            .as_ref()
            .map(|c| format!("{}:processing:{c}", self.key))
    }

    /// Connect to the server.
    pub fn connect(&self) -> redis::RedisResult<redis::Connection> {
        use redis::IntoConnectionInfo;
        let info = redis::ConnectionAddr::Tcp(self.host.clone(), self.port)
            .into_connection_info()?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        redis::Client::open(info)?.get_connection_with_timeout(std::time::Duration::from_secs(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suricata_shapes() {
        let u = RedisUri::parse("x", "127.0.0.1:6380/suricata?mode=channel").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.key.as_str(), u.mode),
            ("127.0.0.1", 6380, "suricata", RedisMode::Channel)
        );
        assert_eq!(RedisUri::parse("x", "h/k").unwrap().mode, RedisMode::List);
        assert!(RedisUri::parse("x", "h:1/").is_err());
        assert!(RedisUri::parse("x", "h:1/k?mode=odd").is_err());
    }
}
