//! `nats://HOST:PORT/SUBJECT`: core NATS (optionally a queue group, so engines share the
//! messages), or a JetStream durable pull consumer with explicit acks.
//!
//! Core NATS keeps nothing: what arrives while no engine listens, or while a slow one is
//! behind (the server cuts slow consumers off), is lost, and so is what an engine had
//! received when it is killed. JetStream (`stream=NAME&durable=NAME`) is at-least-once: a
//! message is acked only when every output has flushed what it became ([`crate::ack`]);
//! a failed output naks it (redelivered at once); after SIGKILL the server redelivers what
//! was not acked once `ack_wait_ms` (default 30 s) has passed. Engines using one durable
//! share its messages. The stream is created (capturing SUBJECT) if it does not exist.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use crossbeam_channel::{unbounded, Receiver};
use futures_util::{FutureExt, StreamExt};

use super::{await_receipts, io_error, Backoff, Collector, SourceCtx};
use crate::ack::{Ack, Receipt};
use crate::nats_uri::NatsUri;

#[derive(Debug)]
/// A NATS subscriber or JetStream pull consumer.
pub struct NatsSource {
    /// What to consume.
    pub uri: NatsUri,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl NatsSource {
    /// Consume until the engine stops.
    pub fn run(self, mut ctx: SourceCtx) {
        let rt = match NatsUri::runtime() {
            Ok(rt) => rt,
            Err(e) => {
                ctx.not_ready(format!("nats: starting the I/O runtime: {e}"));
                return io_error(&ctx, "nats: starting the I/O runtime", &e);
            }
        };
        let jet = self.uri.stream.is_some();
        let mut col = if jet {
            Collector::manual(&ctx)
        } else {
            Collector::new(&ctx)
        };
        let (tx, rx) = unbounded::<Receipt>();
        // JetStream messages waiting for their batch's receipt
        let mut waiting: HashMap<u64, Vec<jetstream::Message>> = HashMap::new();
        let mut next_id = 0u64;
        let mut backoff = Backoff::new();
        while !ctx.stopping() && !col.closed() {
            let res: Result<(), BoxError> = rt.block_on(async {
                let client = async_nats::connect(self.uri.url()).await?;
                if jet {
                    self.jetstream(
                        &client,
                        &mut ctx,
                        &mut col,
                        &tx,
                        &rx,
                        &mut waiting,
                        &mut next_id,
                    )
                    .await
                } else {
                    self.core(&client, &mut ctx, &mut col).await
                }
            });
            col.flush(&mut ctx);
            if let Err(e) = res {
                ctx.not_ready(format!("nats {}: {e}", self.uri.server));
                io_error(
                    &ctx,
                    &format!("nats {}", self.uri.server),
                    &std::io::Error::other(e.to_string()),
                );
                backoff.wait(&ctx);
            } else {
                backoff.reset();
            }
        }
        if jet {
            // shutdown: ack what the outputs confirm while the engine drains
            await_receipts(Duration::from_millis(20), || {
                rt.block_on(settle(&rx, &mut waiting));
                waiting.is_empty()
            });
            if !waiting.is_empty() {
                tracing::warn!(input = %ctx.tag, batches = waiting.len(),
                    "stopping with messages not confirmed by every output: the server redelivers them");
            }
        }
    }

    async fn core(
        &self,
        client: &async_nats::Client,
        ctx: &mut SourceCtx,
        col: &mut Collector,
    ) -> Result<(), BoxError> {
        let mut sub = match &self.uri.queue {
            Some(q) => {
                client
                    .queue_subscribe(self.uri.subject.clone(), q.clone())
                    .await?
            }
            None => client.subscribe(self.uri.subject.clone()).await?,
        };
        // the server has the subscription once a round trip after it has completed
        client.flush().await?;
        tracing::info!(input = %ctx.tag, subject = %self.uri.subject, "subscribed");
        ctx.ready("subscribed");
        while !ctx.stopping() && !col.closed() {
            match tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
                Ok(Some(m)) => {
                    col.message(ctx, &m.payload);
                    // take what else is already here without waiting
                    while let Some(Some(m)) = sub.next().now_or_never() {
                        col.message(ctx, &m.payload);
                    }
                    col.flush(ctx);
                }
                Ok(None) => return Err("subscription closed by the server".into()),
                Err(_) => col.flush(ctx),
            }
        }
        let _ = sub.unsubscribe().await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn jetstream(
        &self,
        client: &async_nats::Client,
        ctx: &mut SourceCtx,
        col: &mut Collector,
        tx: &crossbeam_channel::Sender<Receipt>,
        rx: &Receiver<Receipt>,
        waiting: &mut HashMap<u64, Vec<jetstream::Message>>,
        next_id: &mut u64,
    ) -> Result<(), BoxError> {
        let js = jetstream::new(client.clone());
        let name = self.uri.stream.clone().unwrap_or_default();
        let stream = js
            .get_or_create_stream(jetstream::stream::Config {
                name: name.clone(),
                subjects: vec![self.uri.subject.clone()],
                ..Default::default()
            })
            .await?;
        let durable = self.uri.durable.clone().unwrap_or_default();
        let consumer = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: self.uri.subject.clone(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_millis(self.uri.ack_wait_ms),
                    ..Default::default()
                },
            )
            .await?;
        tracing::info!(input = %ctx.tag, stream = %name, durable = %durable, "JetStream consumer ready");
        ctx.ready("consuming");
        while !ctx.stopping() && !col.closed() {
            settle(rx, waiting).await;
            let mut batch = consumer
                .batch()
                .max_messages(ctx.batch_lines.max(1))
                .expires(Duration::from_millis(200))
                .messages()
                .await?;
            let mut msgs = Vec::new();
            while let Some(m) = batch.next().await {
                let m = m?;
                col.message(ctx, &m.payload);
                msgs.push(m);
            }
            if msgs.is_empty() {
                continue;
            }
            *next_id += 1;
            waiting.insert(*next_id, msgs);
            col.attach(Ack::new(*next_id, tx.clone()));
            col.flush(ctx);
        }
        Ok(())
    }
}

/// Ack (or nak) the messages whose batches are done.
async fn settle(rx: &Receiver<Receipt>, waiting: &mut HashMap<u64, Vec<jetstream::Message>>) {
    while let Ok((id, ok)) = rx.try_recv() {
        for m in waiting.remove(&id).unwrap_or_default() {
            let res = if ok {
                m.ack().await
            } else {
                m.ack_with(AckKind::Nak(None)).await
            };
            if let Err(e) = res {
                tracing::warn!("nats: ack failed ({e}); the server will redeliver");
            }
        }
    }
}

/// `nats://HOST:PORT/SUBJECT[?queue=G | ?stream=S&durable=D]`
pub const NATS: super::SourceScheme = super::SourceScheme {
    name: "nats",
    form: "nats://HOST:PORT/SUBJECT[?queue=G | ?stream=S&durable=D]",
    finite: false,
    options: &[],
    query: crate::nats_uri::INPUT_QUERY,
    parse: |uri, rest, _| {
        Ok(Box::new(NatsSource {
            uri: crate::nats_uri::NatsUri::parse_with(uri, rest, crate::nats_uri::INPUT_QUERY)?,
        }))
    },
};

impl super::Source for NatsSource {
    fn scheme(&self) -> &'static super::SourceScheme {
        &NATS
    }
    fn prepare(&self, _max_line: usize) -> std::io::Result<Box<dyn super::Prepared>> {
        Ok(Box::new(NatsSource {
            uri: self.uri.clone(),
        }))
    }
}

impl super::Prepared for NatsSource {
    fn run(self: Box<Self>, ctx: SourceCtx) {
        NatsSource::run(*self, ctx)
    }
}
