//! `nats://HOST:PORT/SUBJECT[?queue=GROUP | ?stream=NAME&durable=NAME[&ack_wait_ms=N]]`
//!
//! Inputs: core NATS subscribes (with `queue=` engines share the subject's messages); with
//! `stream=` and `durable=` a JetStream pull consumer with explicit acks (at-least-once).
//! Outputs: core publish, or with `jetstream=1` a JetStream publish whose acknowledgement
//! from the server is awaited at every flush.

use crate::uri::UriError;

#[derive(Debug, Clone, PartialEq, Eq)]
/// A parsed `nats://` URI.
pub struct NatsUri {
    /// `host:port`
    pub server: String,
    /// The subject.
    pub subject: String,
    /// Queue group (inputs).
    pub queue: Option<String>,
    /// JetStream stream (inputs).
    pub stream: Option<String>,
    /// JetStream durable consumer (inputs).
    pub durable: Option<String>,
    /// Redelivery delay of unacknowledged messages (JetStream).
    pub ack_wait_ms: u64,
    /// Publish through JetStream with acknowledgements (outputs).
    pub jetstream: bool,
}

impl NatsUri {
    /// Parse what follows `nats://` (`uri` is the whole URI, for messages).
    pub fn parse(uri: &str, rest: &str) -> Result<Self, UriError> {
        let bad = || UriError::NoPath(uri.to_string());
        let (server, path) = rest.split_once('/').ok_or_else(bad)?;
        let (subject, query) = path.split_once('?').unwrap_or((path, ""));
        if server.is_empty() || subject.is_empty() {
            return Err(bad());
        }
        let server = if server.contains(':') {
            server.to_string()
        } else {
            format!("{server}:4222")
        };
        let mut u = NatsUri {
            server,
            subject: subject.to_string(),
            queue: None,
            stream: None,
            durable: None,
            ack_wait_ms: 30_000,
            jetstream: false,
        };
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            match kv.split_once('=') {
                Some(("queue", q)) if !q.is_empty() => u.queue = Some(q.into()),
                Some(("stream", s)) if !s.is_empty() => u.stream = Some(s.into()),
                Some(("durable", d)) if !d.is_empty() => u.durable = Some(d.into()),
                Some(("ack_wait_ms", n)) if n.parse::<u64>().is_ok() => {
                    u.ack_wait_ms = n.parse().unwrap()
                }
                Some(("jetstream", v)) => u.jetstream = matches!(v, "1" | "true" | "yes"),
                _ => {
                    return Err(UriError::Unsupported {
                        scheme: format!("nats (query '{kv}')"),
                        role: "here",
                        supported: "queue=, stream=, durable=, ack_wait_ms=, jetstream=1".into(),
                    })
                }
            }
        }
        if u.durable.is_some() != u.stream.is_some() {
            return Err(UriError::Unsupported {
                scheme: "nats (JetStream)".into(),
                role: "without both stream= and durable=",
                supported: "stream=NAME&durable=NAME together".into(),
            });
        }
        Ok(u)
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://{}", self.server)
    }

    pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_core_and_jetstream_shapes() {
        let u = NatsUri::parse("x", "127.0.0.1:4333/eve.dns?queue=mle").unwrap();
        assert_eq!(u.server, "127.0.0.1:4333");
        assert_eq!(u.subject, "eve.dns");
        assert_eq!(u.queue.as_deref(), Some("mle"));
        let j = NatsUri::parse("x", "h/eve?stream=EVE&durable=mle&ack_wait_ms=2000").unwrap();
        assert_eq!(j.server, "h:4222");
        assert_eq!(
            (j.stream.as_deref(), j.durable.as_deref(), j.ack_wait_ms),
            (Some("EVE"), Some("mle"), 2000)
        );
        assert!(NatsUri::parse("x", "h/eve?stream=EVE").is_err());
        assert!(NatsUri::parse("x", "h/").is_err());
    }
}
