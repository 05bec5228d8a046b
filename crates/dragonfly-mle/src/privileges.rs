//! Signals, chroot and dropping to `nobody`.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

use anyhow::Context;
use dragonfly_engine::Control;
use nix::unistd::{self, User};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

/// SIGTERM/SIGINT: stop and drain (a second one exits at once). SIGHUP/SIGUSR1: reopen outputs.
/// SIGUSR2: hot reload (config.lua and every script).
pub fn handle_signals(control: &Control) -> anyhow::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2])
        .context("installing signal handlers")?;
    let control = control.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                match sig {
                    SIGTERM | SIGINT => {
                        if control.shutdown.swap(true, Ordering::SeqCst) {
                            let _ = writeln!(
                                std::io::stderr(),
                                "dragonfly-mle: second stop signal, exiting without draining"
                            );
                            std::process::exit(dragonfly_engine::exit::INTERNAL as i32);
                        }
                        stop_deadline(&control);
                    }
                    SIGUSR2 => {
                        tracing::info!("signal {sig}: reloading config.lua and the scripts");
                        control.reload.request();
                    }
                    _ => {
                        tracing::info!("signal {sig}: reopening outputs");
                        control.reopen.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })?;
    Ok(())
}

/// After a stop signal: the process ends within `engine.drain_timeout_s` plus
/// [`dragonfly_engine::STOP_MARGIN`] whatever any thread is doing. The engine's own drain
/// deadline normally comes first; this one holds when nothing else can (the control thread
/// wedged in a reload, an output that hangs before the drain starts).
fn stop_deadline(control: &Control) {
    let ms = control.drain_timeout_ms.load(Ordering::SeqCst);
    let limit = std::time::Duration::from_millis(ms) + dragonfly_engine::STOP_MARGIN;
    let spawned = std::thread::Builder::new()
        .name("stop-deadline".into())
        .spawn(move || {
            std::thread::sleep(limit);
            let _ = writeln!(
                std::io::stderr(),
                "dragonfly-mle: still running {:.1} s after the stop signal (engine.drain_timeout_s plus {} s): exiting without draining",
                limit.as_secs_f64(),
                dragonfly_engine::STOP_MARGIN.as_secs()
            );
            // SAFETY: _exit ends the process at once; nothing runs after it (no handler, no
            // lock taken), which is the point: a wedged thread may hold any lock.
            unsafe { libc::_exit(dragonfly_engine::exit::INTERNAL as i32) };
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the stop deadline: {e}");
    }
}

pub fn nobody() -> anyhow::Result<User> {
    User::from_name("nobody")?.context("user 'nobody' does not exist")
}

pub fn chroot(root: &Path) -> anyhow::Result<()> {
    unistd::chroot(root).with_context(|| format!("chroot {}", root.display()))?;
    unistd::chdir("/").context("chdir / after chroot")?;
    tracing::info!(root = %root.display(), "chrooted");
    Ok(())
}

pub fn drop_to(user: &User) -> anyhow::Result<()> {
    unistd::setgroups(&[user.gid]).context("setgroups")?;
    unistd::setgid(user.gid).context("setgid")?;
    unistd::setuid(user.uid).context("setuid")?;
    if unistd::setuid(unistd::Uid::from_raw(0)).is_ok() && user.uid.as_raw() != 0 {
        anyhow::bail!("privileges were not dropped: setuid(0) still succeeds");
    }
    tracing::info!(user = %user.name, uid = user.uid.as_raw(), "dropped privileges");
    Ok(())
}
