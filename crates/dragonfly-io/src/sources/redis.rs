//! `redis://HOST:PORT/KEY?mode=list|rpush|channel`: consume what Suricata's `redis` eve output
//! writes. List modes pop (BRPOP for `list`, BLPOP for `rpush`, so both are FIFO), taking up
//! to a batch at a time; `channel` subscribes. A lost server is retried with backoff, counted
//! and logged; the input never ends by itself.

use std::time::Duration;

use super::{io_error, Collector, SourceCtx};
use crate::redis_uri::{RedisMode, RedisUri};

pub struct RedisSource {
    pub uri: RedisUri,
}

const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl RedisSource {
    pub fn run(self, mut ctx: SourceCtx) {
        let mut col = Collector::new(&ctx);
        let mut backoff = Duration::from_millis(100);
        while !ctx.stopping() && !col.closed() {
            let res = match self.uri.mode {
                RedisMode::Channel => self.subscribe(&mut ctx, &mut col),
                _ => self.pop(&mut ctx, &mut col),
            };
            col.flush(&mut ctx);
            if let Err(e) = res {
                io_error(
                    &ctx,
                    &format!("redis {}:{}", self.uri.host, self.uri.port),
                    &std::io::Error::other(e.to_string()),
                );
                let deadline = std::time::Instant::now() + backoff;
                while std::time::Instant::now() < deadline && !ctx.stopping() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            } else {
                backoff = Duration::from_millis(100);
            }
        }
        col.flush(&mut ctx);
    }

    fn pop(&self, ctx: &mut SourceCtx, col: &mut Collector) -> redis::RedisResult<()> {
        let mut con = self.uri.connect()?;
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
