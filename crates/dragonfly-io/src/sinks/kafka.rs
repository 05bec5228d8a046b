//! `kafka://BROKERS/TOPIC[?key=FIELD]`: one Kafka record per message, keyed by the value of a
//! top-level field (e.g. `flow_id` or `src_ip`) so a flow's events stay in one partition.
//!
//! Delivery reports are checked, not assumed: `flush()` returns only when every record
//! produced so far has been acknowledged by the broker or has failed; failed records are
//! produced again (up to [`RETRIES`] rounds, on top of librdkafka's own retries), and what
//! still fails is counted as dropped and makes the flush fail, so the inputs whose events
//! these were do not commit them (see [`crate::ack`]).

use dragonfly_event::sync::Locked;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::Sink;
use crate::kafka_uri::KafkaUri;
use crate::Batch;
use dragonfly_event::json::FieldKey;

/// Rounds of producing failed records again before giving up on them.
pub const RETRIES: usize = 3;

/// Records that failed delivery: (payload, key), and the last error.
#[derive(Default)]
struct Failed {
    records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    last_error: Option<String>,
}

struct Reports {
    failed: Arc<Mutex<Failed>>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            let mut f = self.failed.locked();
            f.records.push((
                m.payload().unwrap_or_default().to_vec(),
                m.key().map(<[u8]>::to_vec),
            ));
            f.last_error = Some(e.to_string());
        }
    }
}

/// Produces one record per message; deliveries checked at flush.
pub struct KafkaSink {
    uri: KafkaUri,
    producer: BaseProducer<Reports>,
    failed: Arc<Mutex<Failed>>,
    key: Option<FieldKey>,
    dropped: u64,
}

impl KafkaSink {
    /// A producer for `uri`.
    pub fn new(uri: KafkaUri) -> io::Result<Self> {
        let failed = Arc::new(Mutex::new(Failed::default()));
        let mut c = uri.client_config();
        c.set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("acks", "all")
            .set("enable.idempotence", "false");
        uri.apply_options(&mut c);
        let producer = c
            .create_with_context(Reports {
                failed: failed.clone(),
            })
            .map_err(io::Error::other)?;
        Ok(Self {
            key: uri.key.as_deref().map(FieldKey::new),
            uri,
            producer,
            failed,
            dropped: 0,
        })
    }

    fn produce(&self, payload: &[u8], key: Option<&[u8]>) -> io::Result<()> {
        let mut record = BaseRecord::to(&self.uri.topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        let mut record = record;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // the local queue is full: serve delivery reports until there is room
                    self.producer.poll(Duration::from_millis(50));
                    record = r;
                }
                Err((e, _)) => return Err(io::Error::other(e)),
            }
        }
    }

    /// Serve delivery reports until nothing is in flight (bounded by librdkafka's
    /// `delivery.timeout.ms`, default 300 s, after which a record is reported failed).
    fn settle(&self) {
        let start = Instant::now();
        let mut next_note = Duration::from_secs(10);
        while self.producer.in_flight_count() > 0 {
            self.producer.poll(Duration::from_millis(100));
            if start.elapsed() >= next_note {
                tracing::warn!(topic = %self.uri.topic, in_flight = self.producer.in_flight_count(),
                    "waiting for the Kafka broker to confirm records");
                next_note += Duration::from_secs(10);
            }
        }
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, batch: &Batch) -> io::Result<()> {
        for msg in batch.iter() {
            let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
            let key = self.key.as_ref().and_then(|k| k.value(msg));
            self.produce(msg, key)?;
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.settle();
        for round in 0..=RETRIES {
            let failed = std::mem::take(&mut *self.failed.locked());
            if failed.records.is_empty() {
                return Ok(());
            }
            let err = failed.last_error.unwrap_or_default();
            if round == RETRIES {
                self.dropped += failed.records.len() as u64;
                return Err(io::Error::other(format!(
                    "{} records not delivered to topic '{}' after {RETRIES} retries: {err}",
                    failed.records.len(),
                    self.uri.topic
                )));
            }
            tracing::warn!(topic = %self.uri.topic, records = failed.records.len(), round = round + 1,
                "delivery failed ({err}); producing again");
            for (payload, key) in &failed.records {
                if let Err(e) = self.produce(payload, key.as_deref()) {
                    self.dropped += 1;
                    return Err(e);
                }
            }
            self.settle();
        }
        Ok(())
    }

    fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

/// `kafka://BROKERS/TOPIC[?key=FIELD]`
pub const KAFKA: super::SinkScheme = super::SinkScheme {
    name: "kafka",
    form: "kafka://BROKERS/TOPIC[?key=FIELD]",
    options: &[crate::options::OptionDoc {
        name: "*",
        kind: crate::options::OptKind::Any,
        default: "",
        doc: "librdkafka producer properties (defaults here: `acks=all`, `linger.ms=5`, `compression.type=lz4`)",
    }],
    query: crate::kafka_uri::OUTPUT_QUERY,
    parse: |uri, rest, _, options| {
        Ok(Box::new(KafkaOutput {
            uri: crate::kafka_uri::KafkaUri::parse_with(uri, rest, crate::kafka_uri::OUTPUT_QUERY)?.with_options(&options.passed_on()),
        }))
    },
};

#[derive(Debug)]
struct KafkaOutput {
    uri: crate::kafka_uri::KafkaUri,
}

impl super::Destination for KafkaOutput {
    fn scheme(&self) -> &'static super::SinkScheme {
        &KAFKA
    }
    fn describe(&self) -> String {
        let u = &self.uri;
        format!("kafka://{}/{}", u.brokers, u.topic)
    }
    fn open(&self) -> std::io::Result<Box<dyn super::Sink>> {
        Ok(Box::new(KafkaSink::new(self.uri.clone())?))
    }
}
