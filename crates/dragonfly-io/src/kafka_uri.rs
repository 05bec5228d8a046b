//! `kafka://HOST:PORT[,HOST:PORT]/TOPIC?group=NAME&key=FIELD&commit_ms=N&<librdkafka option>=V`
//!
//! Query keys with a dot (`session.timeout.ms`, `compression.type`, ...) and the entry's
//! `options = { ... }` table in config.lua go to librdkafka as they are.

use crate::uri::UriError;

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
    /// Parse the part after `kafka://`.
    pub fn parse(uri: &str, rest: &str) -> Result<Self, UriError> {
        let n = crate::uri::net(uri, rest, "topic", "kafka://HOST:PORT[,HOST:PORT]/TOPIC")?;
        for b in n.addr.split(',') {
            if let Some((_, p)) = b.rsplit_once(':') {
                crate::uri::port(uri, p)?;
            }
        }
        let mut u = KafkaUri {
            brokers: n.addr.to_string(),
            topic: n.path.to_string(),
            group: "dragonfly-mle".into(),
            key: None,
            commit_ms: 1000,
            options: Vec::new(),
        };
        for (k, v) in n.query {
            match (k, v) {
                ("group", g) if !g.is_empty() => u.group = g.to_string(),
                ("key", f) if !f.is_empty() => u.key = Some(f.to_string()),
                ("commit_ms", ms) if ms.parse::<u64>().is_ok() => {
                    u.commit_ms = ms.parse().unwrap_or(1000)
                }
                (k, v) if k.contains('.') => u.options.push((k.into(), v.into())),
                _ => {
                    return Err(crate::uri::bad_query(
                        uri,
                        k,
                        v,
                        "group=NAME, key=FIELD, commit_ms=N, librdkafka properties (a.b=v)",
                    ))
                }
            }
        }
        Ok(u)
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
