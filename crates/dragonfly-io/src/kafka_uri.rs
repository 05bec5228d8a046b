//! `kafka://HOST:PORT[,HOST:PORT]/TOPIC?group=NAME&key=FIELD&commit_ms=N&<librdkafka option>=V`
//!
//! Query keys with a dot (`session.timeout.ms`, `compression.type`, ...) and the entry's
//! `options = { ... }` table in config.lua go to librdkafka as they are.

use crate::options::{OptKind, OptionDoc, Opts};
use crate::uri::UriError;

// The query parameters of `kafka://` URIs; names with a dot go to librdkafka.
const GROUP: OptionDoc = OptionDoc {
    name: "group",
    kind: OptKind::Name,
    default: "dragonfly-mle",
    doc: "the consumer group; engines with one group split the partitions",
};

const COMMIT_MS: OptionDoc = OptionDoc {
    name: "commit_ms",
    kind: OptKind::Int {
        min: 0,
        max: 86_400_000,
    },
    default: "1000",
    doc: "how often offsets done by every output are committed, in milliseconds",
};

const KEY: OptionDoc = OptionDoc {
    name: "key",
    kind: OptKind::Name,
    default: "",
    doc: "the top-level field whose value keys each record (`flow_id`, `src_ip`)",
};

/// The query parameters an input's URI takes.
pub const INPUT_QUERY: &[OptionDoc] = &[GROUP, COMMIT_MS];
/// The query parameters an output's URI takes.
pub const OUTPUT_QUERY: &[OptionDoc] = &[KEY];
/// Every query parameter of the form (inputs' and outputs').
pub const QUERY: &[OptionDoc] = &[GROUP, COMMIT_MS, KEY];

#[derive(Debug, Clone, PartialEq, Eq)]
/// A parsed `kafka://` URI with its client settings.
pub struct KafkaUri {
    /// `bootstrap.servers`
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Consumer group (inputs); default "dragonfly-mle".
    pub group: String,
    /// Output: the top-level event field whose value keys each message (e.g. `flow_id`).
    pub key: Option<String>,
    /// Input: how often done offsets are committed, in milliseconds.
    pub commit_ms: u64,
    /// librdkafka settings, applied last (they win).
    pub options: Vec<(String, String)>,
}

impl KafkaUri {
    /// Parse the part after `kafka://`. Every query parameter of the form is taken ([`QUERY`]).
    pub fn parse(uri: &str, rest: &str) -> Result<Self, UriError> {
        Self::parse_with(uri, rest, QUERY)
    }

    /// As [`KafkaUri::parse`], taking only the query parameters in `rows` (an input's or an
    /// output's: one meant for the other is refused, naming the ones this takes).
    pub fn parse_with(uri: &str, rest: &str, rows: &'static [OptionDoc]) -> Result<Self, UriError> {
        let n = crate::uri::net(uri, rest, "topic", "kafka://HOST:PORT[,HOST:PORT]/TOPIC")?;
        for b in n.addr.split(',') {
            if let Some((_, p)) = b.rsplit_once(':') {
                crate::uri::port(uri, p)?;
            }
        }
        // librdkafka properties (a.b=v) pass through; the rest are QUERY's
        let (librdkafka, ours): (Vec<_>, Vec<_>) =
            n.query.iter().partition(|(k, _)| k.contains('.'));
        let q = Opts::parse_query(uri, rows, &ours, "librdkafka properties (a.b=v)")?;
        Ok(KafkaUri {
            brokers: n.addr.to_string(),
            topic: n.path.to_string(),
            group: q.text("group").unwrap_or_default(),
            key: q.text("key"),
            commit_ms: q.int("commit_ms").unwrap_or_default(),
            options: librdkafka
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    /// Settings from config.lua's `options` table come after the URI's.
    pub fn with_options(mut self, options: &[(String, String)]) -> Self {
        self.options.extend(options.iter().cloned());
        self
    }

    pub(crate) fn client_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c
    }

    pub(crate) fn apply_options(&self, c: &mut rdkafka::ClientConfig) {
        for (k, v) in &self.options {
            c.set(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_brokers_topic_and_options() {
        let u = KafkaUri::parse(
            "x",
            "a:9092,b:9092/eve?group=mle&key=flow_id&session.timeout.ms=6000",
        )
        .unwrap();
        assert_eq!(u.brokers, "a:9092,b:9092");
        assert_eq!(u.topic, "eve");
        assert_eq!(u.group, "mle");
        assert_eq!(u.key.as_deref(), Some("flow_id"));
        assert_eq!(
            u.options,
            vec![("session.timeout.ms".to_string(), "6000".to_string())]
        );
        assert!(KafkaUri::parse("x", "a:9092/").is_err());
        assert!(KafkaUri::parse("x", "a:9092/t?bogus=1").is_err());
    }
}
