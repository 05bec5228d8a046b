//! `redis://HOST:PORT/KEY?mode=list|rpush|channel`: consume what Suricata's `redis` eve output
//! writes. List modes pop (BRPOP for `list`, BLPOP for `rpush`, so both are FIFO), taking up
//! to a batch at a time; `channel` subscribes. A lost server is retried with backoff, counted
//! and logged; the input never ends by itself.
//!
//! At-least-once (`consumer=NAME`, list modes): instead of popping, each event is moved
//! atomically (BLMOVE/LMOVE) onto the processing list `KEY:processing:NAME`, and removed from
//! there (RPOP with a count, oldest first) only once every output has flushed what it became
//! ([`crate::ack`]). At start, whatever a killed predecessor of the same name left there is
//! moved back to the head of KEY, oldest first, and read again. Each engine needs its own
//! NAME; a channel cannot be acknowledged (pub/sub keeps nothing).

use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::{await_receipts, io_error, Backoff, Collector, SourceCtx};
use crate::ack::{Ack, Receipt, Watermark};
use crate::redis_uri::{RedisMode, RedisUri};

/// The at-least-once state of a list input; it outlives reconnections.
struct Reliable {
    processing: String,
    tx: Sender<Receipt>,
    rx: Receiver<Receipt>,
    marks: Watermark,
    next_id: u64,
    /// messages moved onto the processing list so far / removed from it
    taken: u64,
    removed: u64,
    recovered: bool,
    failed_logged: bool,
}

impl Reliable {
    /// Remove from the processing list what is done (oldest first).
    fn settle(&mut self, con: &mut redis::Connection, key: &str) -> redis::RedisResult<()> {
        while let Ok((id, ok)) = self.rx.try_recv() {
            if !self.marks.receipt(id, ok) && !self.failed_logged {
                self.failed_logged = true;
                tracing::error!(list = %key, processing = %self.processing,
                    "an output failed to deliver events of this list: they stay on the processing \
                     list and are read again after a restart");
            }
        }
        if let Some(done) = self.marks.advance() {
            let n = done - self.removed;
            if n > 0 {
                let _: Option<Vec<Vec<u8>>> =
                    redis::cmd("RPOP").arg(&self.processing).arg(n).query(con)?;
                self.removed = done;
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
/// A Redis list or channel consumer.
pub struct RedisSource {
    /// What to consume.
    pub uri: RedisUri,
}

impl RedisSource {
    /// Consume until the engine stops.
    pub fn run(self, mut ctx: SourceCtx) {
        let mut reliable = match (self.uri.mode, self.uri.processing_key()) {
            (RedisMode::Channel, Some(_)) => {
                tracing::warn!(input = %ctx.tag, "consumer= is ignored for a channel: pub/sub cannot be acknowledged");
                None
            }
            (_, Some(processing)) => {
                let (tx, rx) = unbounded();
                Some(Reliable {
                    processing,
                    tx,
                    rx,
                    marks: Watermark::default(),
                    next_id: 0,
                    taken: 0,
                    removed: 0,
                    recovered: false,
                    failed_logged: false,
                })
            }
            _ => None,
        };
        let mut col = match reliable {
            Some(_) => Collector::manual(&ctx),
            None => Collector::new(&ctx),
        };
        let mut backoff = Backoff::new();
        while !ctx.stopping() && !col.closed() {
            let res = match (&mut reliable, self.uri.mode) {
                (_, RedisMode::Channel) => self.subscribe(&mut ctx, &mut col),
                (Some(r), _) => self.take(&mut ctx, &mut col, r),
                (None, _) => self.pop(&mut ctx, &mut col),
            };
            col.flush(&mut ctx);
            if let Err(e) = res {
                let what = format!("redis {}:{}", self.uri.host, self.uri.port);
                ctx.not_ready(format!("{what}: {e}"));
                io_error(&ctx, &what, &std::io::Error::other(e.to_string()));
                backoff.wait(&ctx);
            } else {
                backoff.reset();
            }
        }
        col.flush(&mut ctx);
        if let Some(r) = &mut reliable {
            self.finish(r);
        }
    }

    /// Shutdown: wait (bounded) until what was taken is written, and remove it.
    fn finish(&self, r: &mut Reliable) {
        let mut con = None;
        await_receipts(Duration::from_millis(20), || {
            if r.marks.is_failed() {
                return true;
            }
            if con.is_none() {
                con = self.uri.connect().ok();
            }
            if let Some(c) = con.as_mut() {
                if r.settle(c, &self.uri.key).is_err() {
                    con = None;
                }
            }
            r.marks.pending() == 0
        });
        if r.marks.pending() == 0 {
            return;
        }
        tracing::warn!(processing = %r.processing, batches = r.marks.pending(),
            "stopping with events not confirmed by every output: they stay on the processing list");
    }

    /// List modes, at-least-once: move events onto the processing list, a batch per round
    /// trip, and remove them once done.
    fn take(
        &self,
        ctx: &mut SourceCtx,
        col: &mut Collector,
        r: &mut Reliable,
    ) -> redis::RedisResult<()> {
        let mut con = self.uri.connect()?;
        ctx.ready("consuming");
        // our side first: take from KEY's consuming end, push onto the processing list's
        // left, so its right end holds the oldest
        let from = match self.uri.mode {
            RedisMode::List => "RIGHT",
            _ => "LEFT",
        };
        if !r.recovered {
            // a predecessor's unfinished events go back to KEY's consuming end, oldest last
            // moved so that it is read first
            let mut n = 0u64;
            loop {
                let moved: Option<Vec<u8>> = redis::cmd("LMOVE")
                    .arg(&r.processing)
                    .arg(&self.uri.key)
                    .arg("LEFT")
                    .arg(from)
                    .query(&mut con)?;
                if moved.is_none() {
                    break;
                }
                n += 1;
            }
            if n > 0 {
                tracing::warn!(input = %ctx.tag, events = n, processing = %r.processing,
                    "reading again events a previous run took and did not finish");
            }
            r.recovered = true;
        }
        while !ctx.stopping() && !col.closed() {
            r.settle(&mut con, &self.uri.key)?;
            let first: Option<Vec<u8>> = redis::cmd("BLMOVE")
                .arg(&self.uri.key)
                .arg(&r.processing)
                .arg(from)
                .arg("LEFT")
                .arg(0.2)
                .query(&mut con)?;
            let Some(msg) = first else { continue };
            let mut got = vec![msg];
            let mut pipe = redis::pipe();
            for _ in 1..ctx.batch_lines.max(1) {
                pipe.cmd("LMOVE")
                    .arg(&self.uri.key)
                    .arg(&r.processing)
                    .arg(from)
                    .arg("LEFT");
            }
            let more: Vec<Option<Vec<u8>>> = pipe.query(&mut con)?;
            got.extend(more.into_iter().flatten());
            for m in &got {
                col.message(ctx, m);
            }
            r.next_id += 1;
            r.taken += got.len() as u64;
            r.marks.emitted(r.next_id, r.taken);
            col.attach(Ack::new(r.next_id, r.tx.clone()));
            col.flush(ctx);
        }
        Ok(())
    }

    fn pop(&self, ctx: &mut SourceCtx, col: &mut Collector) -> redis::RedisResult<()> {
        let mut con = self.uri.connect()?;
        ctx.ready("consuming");
        let (block, take) = match self.uri.mode {
            RedisMode::List => ("BRPOP", "RPOP"),
            _ => ("BLPOP", "LPOP"),
        };
        while !ctx.stopping() && !col.closed() {
            // wait up to 0.2 s for one event, then take what else is there in one call
            let first: Option<(Vec<u8>, Vec<u8>)> = redis::cmd(block)
                .arg(&self.uri.key)
                .arg(0.2)
                .query(&mut con)?;
            let Some((_, msg)) = first else {
                col.flush(ctx);
                continue;
            };
            col.message(ctx, &msg);
            let more: Option<Vec<Vec<u8>>> = redis::cmd(take)
                .arg(&self.uri.key)
                .arg(ctx.batch_lines.max(1))
                .query(&mut con)?;
            for m in more.unwrap_or_default() {
                col.message(ctx, &m);
            }
            col.flush(ctx);
        }
        Ok(())
    }

    fn subscribe(&self, ctx: &mut SourceCtx, col: &mut Collector) -> redis::RedisResult<()> {
        let mut con = self.uri.connect()?;
        con.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut sub = con.as_pubsub();
        sub.subscribe(&self.uri.key)?;
        ctx.ready("subscribed");
        while !ctx.stopping() && !col.closed() {
            match sub.get_message() {
                Ok(m) => {
                    let payload: Vec<u8> = m.get_payload()?;
                    col.message(ctx, &payload);
                }
                Err(e) if e.is_timeout() => col.flush(ctx),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// `redis://HOST:PORT/KEY?mode=list|rpush|channel&consumer=NAME`
pub const REDIS: super::SourceScheme = super::SourceScheme {
    name: "redis",
    form: "redis://HOST:PORT/KEY?mode=list|rpush|channel&consumer=NAME",
    finite: false,
    options: &[],
    query: crate::redis_uri::INPUT_QUERY,
    parse: |uri, rest, _| {
        Ok(Box::new(RedisSource {
            uri: crate::redis_uri::RedisUri::parse_with(uri, rest, crate::redis_uri::INPUT_QUERY)?,
        }))
    },
};

impl super::Source for RedisSource {
    fn scheme(&self) -> &'static super::SourceScheme {
        &REDIS
    }
    fn prepare(&self, _max_line: usize) -> std::io::Result<Box<dyn super::Prepared>> {
        Ok(Box::new(RedisSource {
            uri: self.uri.clone(),
        }))
    }
}

impl super::Prepared for RedisSource {
    fn run(self: Box<Self>, ctx: SourceCtx) {
        RedisSource::run(*self, ctx)
    }
}
