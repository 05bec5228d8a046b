//! `nats://HOST:PORT/SUBJECT`: one message per event. Core NATS: `flush()` waits until the
//! server has the messages (a PING round trip after them). With `jetstream=1`: each publish
//! is acknowledged by the stream, and `flush()` waits for every acknowledgement; a refused or
//! missing one fails the flush (counted, logged; the inputs do not commit those events).

use std::io;

use async_nats::jetstream;

use super::Sink;
use crate::nats_uri::NatsUri;
use crate::Batch;

/// Publishes one message per event.
pub struct NatsSink {
    uri: NatsUri,
    rt: tokio::runtime::Runtime,
    client: Option<async_nats::Client>,
    pending: Vec<jetstream::context::PublishAckFuture>,
    dropped: u64,
}

impl NatsSink {
    /// A publisher for `uri`.
    pub fn new(uri: NatsUri) -> io::Result<Self> {
        Ok(Self {
            rt: NatsUri::runtime()?,
            uri,
            client: None,
            pending: Vec::new(),
            dropped: 0,
        })
    }

    fn client(&mut self) -> io::Result<async_nats::Client> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = self
            .rt
            .block_on(async_nats::connect(self.uri.url()))
            .map_err(io::Error::other)?;
        self.client = Some(c.clone());
        Ok(c)
    }
}

impl Sink for NatsSink {
    fn write(&mut self, batch: &Batch) -> io::Result<()> {
        let client = self.client()?;
        let subject = self.uri.subject.clone();
        let jet = self.uri.jetstream;
        let res: Result<Vec<_>, io::Error> = self.rt.block_on(async {
            let js = jetstream::new(client.clone());
            let mut acks = Vec::new();
            for msg in batch.iter() {
                let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
                let payload = msg.to_vec().into();
                if jet {
                    acks.push(
                        js.publish(subject.clone(), payload)
                            .await
                            .map_err(io::Error::other)?,
                    );
                } else {
                    client
                        .publish(subject.clone(), payload)
                        .await
                        .map_err(io::Error::other)?;
                }
            }
            Ok(acks)
        });
        match res {
            Ok(acks) => {
                self.pending.extend(acks);
                Ok(())
            }
            Err(e) => {
                self.client = None;
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let Some(client) = self.client.clone() else {
            return Ok(());
        };
        let pending = std::mem::take(&mut self.pending);
        let (flushed, failed, last) = self.rt.block_on(async {
            let flushed = client.flush().await.map_err(io::Error::other);
            let mut failed = 0u64;
            let mut last = None;
            for ack in pending {
                if let Err(e) = ack.await {
                    failed += 1;
                    last = Some(e.to_string());
                }
            }
            (flushed, failed, last)
        });
        if failed > 0 {
            self.dropped += failed;
            return Err(io::Error::other(format!(
                "{failed} messages not acknowledged by JetStream: {}",
                last.unwrap_or_default()
            )));
        }
        flushed
    }

    fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

/// `nats://HOST:PORT/SUBJECT[?jetstream=1]`
pub const NATS: super::SinkScheme = super::SinkScheme {
    name: "nats",
    form: "nats://HOST:PORT/SUBJECT[?jetstream=1]",
    options: &[],
    query: crate::nats_uri::OUTPUT_QUERY,
    parse: |uri, rest, _, _| {
        Ok(Box::new(NatsOutput {
            uri: crate::nats_uri::NatsUri::parse_with(uri, rest, crate::nats_uri::OUTPUT_QUERY)?,
        }))
    },
};

#[derive(Debug)]
struct NatsOutput {
    uri: crate::nats_uri::NatsUri,
}

impl super::Destination for NatsOutput {
    fn scheme(&self) -> &'static super::SinkScheme {
        &NATS
    }
    fn describe(&self) -> String {
        let u = &self.uri;
        format!("nats://{}/{}", u.server, u.subject)
    }
    fn open(&self) -> std::io::Result<Box<dyn super::Sink>> {
        Ok(Box::new(NatsSink::new(self.uri.clone())?))
    }
}
