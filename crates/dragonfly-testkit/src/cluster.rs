//! A Redis Cluster of our own: N masters (no replicas) on free ports, created with
//! `redis-cli --cluster create`, and resharded with `redis-cli --cluster reshard`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::RedisServer;

/// A running cluster; its servers stop when it is dropped.
pub struct RedisCluster {
    pub servers: Vec<RedisServer>,
}

fn cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(args)
        .output()
        .expect("redis-cli must be installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl RedisCluster {
    /// Start `masters` servers with cluster mode on (`extra` added to each command line),
    /// join them into one cluster with the slots spread evenly, and wait until every node
    /// says the cluster is ok.
    pub fn start(masters: usize, extra: &[&str]) -> Self {
        let mut args = vec![
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
        ];
        args.extend_from_slice(extra);
        let servers: Vec<RedisServer> = (0..masters)
            .map(|_| RedisServer::start_with(&args))
            .collect();
        let addrs: Vec<String> = servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addrs.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        cli(&create);
        let c = RedisCluster { servers };
        c.wait_ok();
        c
    }

    /// Wait until every node reports `cluster_state:ok` and agrees on the slots.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = self.servers.iter().all(|s| {
                let p = s.port.to_string();
                cli(&["-p", &p, "CLUSTER", "INFO"]).contains("cluster_state:ok")
            }) && {
                let p = self.servers[0].port.to_string();
                !cli(&["--cluster", "check", &format!("127.0.0.1:{p}")]).contains("[ERR]")
            };
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster never became ok");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The nodes as config.lua's `redis_cluster` list: `{ "127.0.0.1:P", ... }`.
    pub fn lua_list(&self) -> String {
        let items: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("\"127.0.0.1:{}\"", s.port))
            .collect();
        format!("{{ {} }}", items.join(", "))
    }

    /// The node id of server `i`.
    pub fn id(&self, i: usize) -> String {
        let p = self.servers[i].port.to_string();
        cli(&["-p", &p, "CLUSTER", "MYID"]).trim().to_string()
    }

    /// Move `slots` slots from server `from` to server `to` (keys move with them; clients
    /// see MOVED and ASK meanwhile).
    pub fn reshard(&self, from: usize, to: usize, slots: usize) {
        let seed = format!("127.0.0.1:{}", self.servers[0].port);
        let (from, to, n) = (self.id(from), self.id(to), slots.to_string());
        cli(&[
            "--cluster",
            "reshard",
            &seed,
            "--cluster-from",
            &from,
            "--cluster-to",
            &to,
            "--cluster-slots",
            &n,
            "--cluster-yes",
        ]);
    }
}
