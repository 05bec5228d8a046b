//! `nats://HOST:PORT/SUBJECT[?queue=GROUP | ?stream=NAME&durable=NAME[&ack_wait_ms=N]]`
//!
//! Inputs: core NATS subscribes (with `queue=` engines share the subject's messages); with
//! `stream=` and `durable=` a JetStream pull consumer with explicit acks (at-least-once).
//! Outputs: core publish, or with `jetstream=1` a JetStream publish whose acknowledgement
//! from the server is awaited at every flush.

use crate::options::{OptKind, OptionDoc, Opts};
use crate::uri::UriError;

// The query parameters of `nats://` URIs.
const QUEUE: OptionDoc = OptionDoc {
    name: "queue",
    kind: OptKind::Name,
    default: "",
    doc: "core NATS: a queue group; the engines in it share the messages",
};

const STREAM: OptionDoc = OptionDoc {
    name: "stream",
    kind: OptKind::Name,
    default: "",
    doc: "the JetStream stream (created if missing), with `durable`",
};

const DURABLE: OptionDoc = OptionDoc {
    name: "durable",
    kind: OptKind::Name,
    default: "",
    doc: "the JetStream durable pull consumer, shared by every engine using it",
};

const ACK_WAIT_MS: OptionDoc = OptionDoc {
    name: "ack_wait_ms",
    kind: OptKind::Int {
        min: 0,
        max: 4_294_967_295,
    },
    default: "30000",
    doc: "JetStream: redelivery delay of a message not acknowledged (after a crash)",
};

const JETSTREAM: OptionDoc = OptionDoc {
    name: "jetstream",
    kind: OptKind::Choice(&["1", "true", "yes", "0", "false", "no"]),
    default: "0",
    doc: "publish through JetStream and await every acknowledgement at flush",
};

/// The query parameters an input's URI takes.
pub const INPUT_QUERY: &[OptionDoc] = &[QUEUE, STREAM, DURABLE, ACK_WAIT_MS];
/// The query parameters an output's URI takes.
pub const OUTPUT_QUERY: &[OptionDoc] = &[JETSTREAM];
/// Every query parameter of the form (inputs' and outputs').
pub const QUERY: &[OptionDoc] = &[QUEUE, STREAM, DURABLE, ACK_WAIT_MS, JETSTREAM];

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
    /// Parse what follows `nats://` (`uri` is the whole URI, for messages). Every query parameter of the form is taken ([`QUERY`]).
    pub fn parse(uri: &str, rest: &str) -> Result<Self, UriError> {
        Self::parse_with(uri, rest, QUERY)
    }

    /// As [`NatsUri::parse`], taking only the query parameters in `rows` (an input's or an
    /// output's: one meant for the other is refused, naming the ones this takes).
    pub fn parse_with(uri: &str, rest: &str, rows: &'static [OptionDoc]) -> Result<Self, UriError> {
        let n = crate::uri::net(uri, rest, "subject", "nats://HOST:PORT/SUBJECT")?;
        let server = match n.addr.rsplit_once(':') {
            Some((_, p)) => {
                crate::uri::port(uri, p)?;
                n.addr.to_string()
            }
            None => format!("{}:4222", n.addr),
        };
        let q = Opts::parse_query(uri, rows, &n.query, "")?;
        let u = NatsUri {
            server,
            subject: n.path.to_string(),
            queue: q.text("queue"),
            stream: q.text("stream"),
            durable: q.text("durable"),
            ack_wait_ms: q.int("ack_wait_ms").unwrap_or_default(),
            jetstream: matches!(q.text("jetstream").as_deref(), Some("1" | "true" | "yes")),
        };
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
