//! `dragonfly-mle model load FILE KEY`: load a model exported from scikit-learn
//! (`tools/export_sklearn.py`) into the store config.lua names — a Redis server (with the
//! dragonfly-redisml module) or the embedded store's snapshot file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use dragonfly_config::Store;
use dragonfly_store::embedded::EmbeddedStore;
use dragonfly_store::redis_backend::{RedisAddr, RedisTarget};
use dragonfly_store::Reply;

#[derive(clap::Subcommand, Debug)]
pub enum ModelAction {
    /// Load FILE (JSON from tools/export_sklearn.py) into KEY, replacing what is there.
    Load {
        /// The exported model (JSON).
        file: PathBuf,
        /// The key scripts use (e.g. in ML.FOREST.RUN KEY ...).
        key: String,
    },
}

pub fn run(root: &Path, action: &ModelAction) -> anyhow::Result<ExitCode> {
    let ModelAction::Load { file, key } = action;
    let json =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let cmds = dragonfly_models::import::commands(&json, key)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let config = dragonfly_config::load(root).map_err(|e| anyhow::anyhow!("{e}"))?;
    match &config.store {
        Store::Embedded => {
            if config.engine.store_snapshot.is_empty() {
                bail!(
                    "config.lua uses the embedded store without engine.store_snapshot: a model loaded now \
                     would be gone before the engine starts. Set engine = {{ store_snapshot = \"state/store.snap\" }}"
                );
            }
            let path = root.join(&config.engine.store_snapshot);
            let db = EmbeddedStore::new();
            db.load(&path)
                .with_context(|| format!("loading {}", path.display()))?;
            for c in &cmds {
                check(db.execute(c), c)?;
            }
            db.save(&path)
                .with_context(|| format!("writing {}", path.display()))?;
            println!(
                "model '{key}' loaded into the embedded store snapshot {} ({} commands)",
                path.display(),
                cmds.len()
            );
        }
        Store::Tcp { host, port } => load_redis(
            RedisAddr::Tcp {
                host: host.clone(),
                port: *port,
            },
            &cmds,
            key,
        )?,
        Store::Unix { path } => load_redis(RedisAddr::Unix { path: path.clone() }, &cmds, key)?,
        Store::Cluster { nodes } => load_redis(
            RedisAddr::Cluster {
                nodes: nodes.clone(),
            },
            &cmds,
            key,
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

/// An error reply is a failure naming the command.
fn check(r: Reply, c: &[Vec<u8>]) -> anyhow::Result<()> {
    if let Reply::Error(e) = r {
        bail!("{} failed: {e}", String::from_utf8_lossy(&c[0]));
    }
    Ok(())
}

fn load_redis(addr: RedisAddr, cmds: &[Vec<Vec<u8>>], key: &str) -> anyhow::Result<()> {
    use dragonfly_store::Connection;
    let target = RedisTarget::new(addr.clone());
    let mut conn = target.connect().map_err(|e| anyhow::anyhow!(e))?;
    for c in cmds {
        if let Reply::Error(e) = conn.command(c) {
            let name = String::from_utf8_lossy(&c[0]);
            if e.to_ascii_lowercase().contains("unknown command") {
                bail!(
                    "{name} failed: {e}: is the module loaded? start redis-server with \
                     --loadmodule target/release/libdragonfly_redisml.so"
                );
            }
            bail!("{name} failed; the server said: {e}");
        }
    }
    println!(
        "model '{key}' loaded into Redis at {addr} ({} commands)",
        cmds.len()
    );
    Ok(())
}
