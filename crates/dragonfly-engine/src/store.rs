//! The store behind `hiredis`: start-up checks of config.lua's `modules`, and the embedded
//! store's snapshots.

use std::path::{Path, PathBuf};

use dragonfly_config::Config;
use dragonfly_lua::Backend;
use dragonfly_store::embedded::EmbeddedStore;
use dragonfly_store::Reply;

/// A command each known module provides, to ask the server whether it is loaded.
fn probe_command(tag: &str, module: &str) -> Option<&'static str> {
    let t = format!("{tag} {module}").to_ascii_lowercase();
    (t.contains("redisml") || t.contains("redis-ml") || t.contains("redis_ml"))
        .then_some("ML.FOREST.RUN")
}

fn args(words: &[&str]) -> Vec<Vec<u8>> {
    words.iter().map(|w| w.as_bytes().to_vec()).collect()
}

/// Check that every module config.lua lists is there: Redis 7 refuses `MODULE LOAD` at run
/// time, so the engine does not try; it says how to start redis-server instead.
pub fn check_modules(config: &Config, backend: &Backend) -> Vec<String> {
    let mut problems = Vec::new();
    for m in &config.modules {
        let entry = format!("{}: {}", config.file, m.entry);
        let probe = probe_command(&m.tag, &m.module);
        match backend {
            Backend::Embedded(db) => {
                let answered = probe.is_some_and(|cmd| {
                    !matches!(db.execute(&args(&[cmd])), Reply::Error(e) if e.starts_with("ERR unknown command"))
                });
                if !answered {
                    tracing::warn!("{entry}: the embedded store does not provide module '{}'; its commands will fail", m.module);
                }
            }
            // on every server: each node of a cluster must have it
            Backend::Redis(target) => {
                for target in target.servers() {
                    let present = match probe {
                        Some(cmd) => target
                            .execute(&args(&["COMMAND", "INFO", cmd]))
                            .map(|r| matches!(r, Reply::Array(v) if v.first().is_some_and(|x| *x != Reply::Nil))),
                        None => target.execute(&args(&["MODULE", "LIST"])).map(|r| {
                            format!("{r:?}").to_ascii_lowercase().contains(&m.tag.to_ascii_lowercase())
                        }),
                    };
                    match present {
                        Ok(true) => {}
                        Ok(false) => problems.push(format!(
                            "{entry}: Redis at {} does not have module '{}' loaded. Redis 7 refuses MODULE LOAD at run time; start it with: redis-server --loadmodule {}",
                            target.addr, m.module, m.module
                        )),
                        Err(e) => tracing::warn!("{entry}: cannot check the module now: {e}"),
                    }
                }
            }
            Backend::Unavailable(_) => {}
        }
    }
    problems
}

/// Writes the embedded store to its snapshot file.
pub struct Snapshotter {
    /// The store.
    pub db: EmbeddedStore,
    /// Its snapshot file (as seen after a chroot).
    pub path: PathBuf,
}

impl Snapshotter {
    /// The path as seen from inside a chroot into `root` (when `runtime_root` is `/`).
    pub fn relocate(path: &Path, root: &Path, runtime_root: &Path) -> PathBuf {
        if runtime_root == Path::new("/") && root != Path::new("/") {
            if let Ok(rel) = path.strip_prefix(root) {
                return Path::new("/").join(rel);
            }
        }
        path.to_path_buf()
    }

    /// Write the snapshot now (problems are logged).
    pub fn save(&self) {
        match self.db.save(&self.path) {
            Ok(n) => tracing::debug!(path = %self.path.display(), keys = n, "embedded store saved"),
            Err(e) => {
                tracing::error!(path = %self.path.display(), "cannot save the embedded store: {e}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// config.lua accepts exactly the eviction policies the embedded store knows.
    #[test]
    fn every_maxmemory_policy_config_accepts_is_one_the_store_knows() {
        use dragonfly_store::embedded::memory::Policy;
        assert_eq!(dragonfly_config::MAXMEMORY_POLICIES, Policy::NAMES);
        for name in dragonfly_config::MAXMEMORY_POLICIES {
            assert!(Policy::parse(name).is_some(), "{name}");
        }
    }
}
