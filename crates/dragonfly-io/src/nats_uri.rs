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
        let n = crate::uri::net(uri, rest, "subject", "nats://HOST:PORT/SUBJECT")?;
        let server = match n.addr.rsplit_once(':') {
            Some((_, p)) => {
                crate::uri::port(uri, p)?;
                n.addr.to_string()
            }
            None => format!("{}:4222", n.addr),
        };
        let mut u = NatsUri {
            server,
            subject: n.path.to_string(),
            queue: None,
            stream: None,
            durable: None,
            ack_wait_ms: 30_000,
            jetstream: false,
        };
        for (k, v) in n.query {
            match (k, v) {
                ("queue", q) if !q.is_empty() => u.queue = Some(q.into()),
                ("stream", s) if !s.is_empty() => u.stream = Some(s.into()),
                ("durable", d) if !d.is_empty() => u.durable = Some(d.into()),
                ("ack_wait_ms", ms) if ms.parse::<u64>().is_ok() => {
                    u.ack_wait_ms = ms.parse().unwrap_or(30_000)
                }
                ("jetstream", v) => u.jetstream = matches!(v, "1" | "true" | "yes"),
                _ => {
                    return Err(crate::uri::bad_query(
                        uri,
                        k,
                        v,
                        "queue=G, stream=S, durable=D, ack_wait_ms=N, jetstream=1",
                    ))
                }
            }
        }
        if u.durable.is_some() != u.stream.is_some() {
            return Err(UriError::BadQuery(format!(
                "'{uri}': JetStream needs stream=NAME and durable=NAME together"
            )));
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
