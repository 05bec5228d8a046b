//! A progress line for runs over finite inputs (`--exit-on-eof` on `file://`/`zfile://`) when
//! stderr is a terminal: events read, bytes and their rate, and — when every input is a plain
//! file, whose size is known — the percent done and the time left. Nothing is drawn for a pipe
//! or a file (journald, CI logs), nor with `--log-format json`.
//!
//! It reads the engine's counters four times a second from a thread of its own; the line is
//! redrawn in place (log lines may come between) and left, complete, when the run ends.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use dragonfly_engine::stats::Stats;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress line while it is drawn.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

/// Bytes of the inputs if every one is a plain `file://` (none if any is compressed or
/// not a file).
pub fn total_bytes(uris: &[&str]) -> Option<u64> {
    uris.iter()
        .map(|u| {
            let path = u.strip_prefix("file://")?;
            std::fs::metadata(path).ok().map(|m| m.len())
        })
        .sum()
}

impl Progress {
    /// Start drawing (None when stderr is not a terminal).
    pub fn start(stats: Arc<Stats>, total: Option<u64>) -> Option<Progress> {
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return None;
        }
        let bar = match total {
            Some(n) => ProgressBar::with_draw_target(
                Some(n),
                ProgressDrawTarget::stderr_with_hz(4),
            )
            .with_style(
                ProgressStyle::with_template(
                    "{bar:30} {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                )
                .ok()?,
            ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4))
                .with_style(
                    ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec} {msg}").ok()?,
                ),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || loop {
                let done = stopped.load(Relaxed);
                let bytes: u64 = stats.inputs.iter().map(|i| i.io.bytes.load(Relaxed)).sum();
                let [events, _, out, errors] = stats.totals();
                bar.set_position(total.map_or(bytes, |t| bytes.min(t)));
                bar.set_message(format!("{events} events in, {out} out, {errors} errors"));
                if done {
                    bar.finish();
                    return;
                }
                std::thread::sleep(Duration::from_millis(250));
            })
            .ok()?;
        Some(Progress { stop, thread })
    }

    /// Draw the last state and stop.
    pub fn finish(self) {
        self.stop.store(true, Relaxed);
        let _ = self.thread.join();
    }
}
