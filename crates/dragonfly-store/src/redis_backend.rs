//! The Redis backend: one connection per Lua runtime, TCP_NODELAY on, reconnecting with
//! backoff when the server goes away. While it is away every command returns an error reply
//! (which scripts see as an error table) and the engine carries on.
//!
//! A reply that has not come within the target's timeout (engine.redis_timeout_ms) fails the
//! command the same way and drops the connection: a server that accepts connections but never
//! answers (stopped, wedged, behind a network that drops packets) costs errors, never a hung
//! worker. Blocking commands (BLPOP and friends, `XREAD ... BLOCK`, WAIT) are read without the
//! timeout: they wait as long as the script asked.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::io::tcp::TcpSettings;
use redis::{ConnectionAddr, ConnectionInfo, ConnectionLike, IntoConnectionInfo, Value};

use crate::resp::Resp;
use crate::{Connection, Reply};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the Redis server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAddr {
    /// Over TCP.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// Over a unix socket.
    Unix {
        /// The socket's path.
        path: String,
    },
    /// A Redis Cluster, reached through any of these nodes (host, port): each command goes
    /// to the node that holds its key's slot, following MOVED and ASK redirections (the slot
    /// map is refreshed on MOVED).
    Cluster {
        /// The seed nodes.
        nodes: Vec<(String, u16)>,
    },
}

impl std::fmt::Display for RedisAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisAddr::Tcp { host, port } => write!(f, "{host}:{port}"),
            RedisAddr::Unix { path } => write!(f, "unix:{path}"),
            RedisAddr::Cluster { nodes } => {
                write!(f, "cluster ")?;
                for (i, (h, p)) in nodes.iter().enumerate() {
                    write!(f, "{}{h}:{p}", if i > 0 { "," } else { "" })?;
                }
                Ok(())
            }
        }
    }
}

/// Counters shared by every connection to the store.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Commands answered by the store.
    pub commands: AtomicU64,
    /// Connections lost (or refused) while the engine ran.
    pub connection_errors: AtomicU64,
    /// Successful reconnections after a loss.
    pub reconnects: AtomicU64,
    /// Commands whose reply did not come within the timeout (each also a connection error).
    pub timeouts: AtomicU64,
}

/// Connection settings shared by every runtime.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    /// Where the server is.
    pub addr: RedisAddr,
    /// Commands and connection problems, for the stats.
    pub counters: Arc<StoreCounters>,
    /// Longest wait for a reply (None: no limit).
    pub timeout: Option<Duration>,
    /// How long a read polls before it blocks ([`crate::resp`]; zero: never).
    pub spin: Duration,
    /// How large one reply may be ([`crate::resp::reader`]).
    pub limits: crate::resp::ReplyLimits,
}

/// The default reply timeout (engine.redis_timeout_ms).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl RedisTarget {
    /// A target with the default reply timeout (nothing is connected yet).
    pub fn new(addr: RedisAddr) -> Self {
        Self {
            addr,
            counters: Arc::new(StoreCounters::default()),
            timeout: Some(DEFAULT_TIMEOUT),
            spin: crate::resp::DEFAULT_SPIN,
            limits: crate::resp::ReplyLimits::default(),
        }
    }

    /// The same target refusing replies past `limits` (the connection is dropped and the
    /// command fails).
    pub fn with_reply_limits(mut self, limits: crate::resp::ReplyLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The same target polling for up to `spin` before a read blocks (zero: never).
    pub fn with_spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// The same target with reply timeout `timeout` (None: no limit).
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    fn info(addr: ConnectionAddr) -> redis::RedisResult<ConnectionInfo> {
        Ok(addr
            .into_connection_info()?
            .set_tcp_settings(TcpSettings::default().set_nodelay(true)))
    }

    fn open(&self) -> redis::RedisResult<Link> {
        let one = |con: std::io::Result<Resp>| -> redis::RedisResult<Link> {
            let mut con = con?;
            con.set_timeouts(self.timeout, self.timeout)?;
            con.set_spin(self.spin);
            con.set_limits(self.limits);
            Ok(Link::One(con))
        };
        match &self.addr {
            RedisAddr::Tcp { host, port } => one(Resp::tcp(host, *port, CONNECT_TIMEOUT)),
            RedisAddr::Unix { path } => one(Resp::unix(path)),
            RedisAddr::Cluster { nodes } => {
                let seeds = nodes
                    .iter()
                    .map(|(h, p)| Self::info(ConnectionAddr::Tcp(h.clone(), *p)))
                    .collect::<redis::RedisResult<Vec<_>>>()?;
                let client = redis::cluster::ClusterClient::builder(seeds)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .build()?;
                let con = client.get_connection()?;
                con.set_read_timeout(self.timeout)?;
                con.set_write_timeout(self.timeout)?;
                Ok(Link::Cluster(Box::new(con)))
            }
        }
    }

    /// Connect now; an unreachable server is an error (as `hiredis.connect()` reports it).
    pub fn connect(&self) -> Result<RedisConnection, String> {
        let con = self
            .open()
            .map_err(|e| format!("cannot connect to Redis at {}: {e}", self.addr))?;
        Ok(RedisConnection {
            target: self.clone(),
            con: Some(con),
            backoff: BACKOFF_MIN,
            next_try: Instant::now(),
            unsent: Vec::new(),
            unsent_ends: Vec::new(),
            unsent_kinds: Vec::new(),
            unsent_slots: Vec::new(),
            pipes: crate::cluster_pipe::Pipes::default(),
            in_flight: VecDeque::new(),
            tickets: std::collections::HashMap::new(),
            next_ticket: 1,
            replies: VecDeque::new(),
        })
    }

    /// Every server behind this target, each as a target of its own: a cluster's nodes as
    /// `CLUSTER NODES` lists them on the first seed that answers (the seeds if none does);
    /// the target itself otherwise. For checks that must hold on every node (modules).
    pub fn servers(&self) -> Vec<RedisTarget> {
        let RedisAddr::Cluster { nodes } = &self.addr else {
            return vec![self.clone()];
        };
        let one = |host: &str, port: u16| {
            RedisTarget::new(RedisAddr::Tcp {
                host: host.to_string(),
                port,
            })
            .with_timeout(self.timeout)
            .with_spin(self.spin)
            .with_reply_limits(self.limits)
        };
        for (h, p) in nodes {
            if let Ok(Reply::Bulk(text)) =
                one(h, *p).execute(&[b"CLUSTER".to_vec(), b"NODES".to_vec()])
            {
                // "<id> <ip>:<port>@<cport>[,<hostname>] <flags> ..." per line
                let found: Vec<RedisTarget> = String::from_utf8_lossy(&text)
                    .lines()
                    .filter_map(|l| {
                        let addr = l.split(' ').nth(1)?.split(['@', ',']).next()?;
                        let (host, port) = addr.rsplit_once(':')?;
                        let host = if host.is_empty() { h.as_str() } else { host };
                        Some(one(host, port.parse().ok()?))
                    })
                    .collect();
                if !found.is_empty() {
                    return found;
                }
            }
        }
        nodes.iter().map(|(h, p)| one(h, *p)).collect()
    }

    /// Whether a connection to this target restarts its own socket calls after a signal
    /// ([`crate::resp`]): one server yes; a cluster's (the `redis` crate's sockets) no, so its
    /// callers hold signals back while it waits.
    pub fn restarts_after_signals(&self) -> bool {
        !matches!(self.addr, RedisAddr::Cluster { .. })
    }

    /// One command on a fresh connection (start-up checks, tools).
    pub fn execute(&self, args: &[Vec<u8>]) -> Result<Reply, String> {
        let mut c = self.connect()?;
        Ok(c.command(args))
    }
}

/// A connection to a Redis server that reconnects with backoff when lost.
pub struct RedisConnection {
    target: RedisTarget,
    con: Option<Link>,
    backoff: Duration,
    next_try: Instant,
    /// Commands not sent yet (RESP), and where each ends.
    unsent: Vec<u8>,
    unsent_ends: Vec<usize>,
    /// Whose each unsent command is (in order).
    unsent_kinds: Vec<Kind>,
    /// On a cluster: each unsent command's key slot, if it is one key's.
    unsent_slots: Vec<Option<u16>>,
    /// On a cluster: per-node connections for pipelines.
    pipes: crate::cluster_pipe::Pipes,
    /// Commands sent whose replies have not been read, oldest first.
    in_flight: VecDeque<Kind>,
    /// Replies read for submitted commands, by ticket, not yet taken.
    tickets: std::collections::HashMap<u64, Reply>,
    next_ticket: u64,
    /// Replies read (or errors decided) for appended commands, oldest first.
    replies: VecDeque<Reply>,
}

/// Convert a RESP value into the reply model.
pub fn from_value(v: Value) -> Reply {
    match v {
        Value::Nil => Reply::Nil,
        Value::Int(i) => Reply::Integer(i),
        Value::BulkString(b) => Reply::Bulk(b),
        Value::Array(items) | Value::Set(items) => {
            Reply::Array(items.into_iter().map(from_value).collect())
        }
        Value::SimpleString(s) => Reply::Status(s),
        Value::Okay => Reply::ok(),
        Value::Map(pairs) => Reply::Array(
            pairs
                .into_iter()
                .flat_map(|(k, v)| [from_value(k), from_value(v)])
                .collect(),
        ),
        Value::Attribute { data, .. } => from_value(*data),
        Value::Double(d) => Reply::Bulk(crate::numfmt::fmt_g(d, 17).into_bytes()),
        Value::Boolean(b) => Reply::Integer(b as i64),
        Value::VerbatimString { text, .. } => Reply::Bulk(text.into_bytes()),
        Value::BigNumber(n) => Reply::Bulk(format!("{n:?}").into_bytes()),
        Value::Push { data, .. } => Reply::Array(data.into_iter().map(from_value).collect()),
        Value::ServerError(e) => Reply::Error(match e.details() {
            Some(d) => format!("{} {d}", e.code()),
            None => e.code().to_string(),
        }),
        other => Reply::Error(format!("ERR dragonfly-mle: unexpected reply {other:?}")),
    }
}

fn server_error(e: &redis::RedisError) -> Option<Reply> {
    let code = e.code()?;
    Some(Reply::Error(match e.detail() {
        Some(d) => format!("{code} {d}"),
        None => code.to_string(),
    }))
}

/// An open connection: to one server, or to a cluster (through the `redis` crate's cluster
/// client, which routes by slot and follows redirections).
enum Link {
    One(Resp),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Link {
    fn req(&mut self, packed: &[u8]) -> redis::RedisResult<Value> {
        match self {
            Link::One(c) => c.request(packed),
            Link::Cluster(c) => c.req_packed_command(packed),
        }
    }

    fn set_read_timeout(&mut self, d: Option<Duration>) -> redis::RedisResult<()> {
        match self {
            Link::One(c) => Ok(c.set_read_timeout(d)?),
            Link::Cluster(c) => c.set_read_timeout(d),
        }
    }
}

/// Whether the command named by `args[0]` may block on the server as long as it asks (its
/// reply is read without the timeout).
fn blocking(args: &[Vec<u8>]) -> bool {
    let Some(name) = args.first() else {
        return false;
    };
    const BLOCKING: &[&[u8]] = &[
        b"BLPOP",
        b"BRPOP",
        b"BRPOPLPUSH",
        b"BLMOVE",
        b"BLMPOP",
        b"BZPOPMIN",
        b"BZPOPMAX",
        b"BZMPOP",
        b"WAIT",
        b"WAITAOF",
    ];
    BLOCKING.iter().any(|b| name.eq_ignore_ascii_case(b))
        || ((name.eq_ignore_ascii_case(b"XREAD") || name.eq_ignore_ascii_case(b"XREADGROUP"))
            && args.iter().any(|a| a.eq_ignore_ascii_case(b"BLOCK")))
}

impl RedisConnection {
    fn lost(&mut self, e: &redis::RedisError) -> Reply {
        self.con = None;
        let c = &self.target.counters;
        let n = c.connection_errors.fetch_add(1, Relaxed) + 1;
        self.next_try = Instant::now() + self.backoff;
        if e.is_timeout() {
            c.timeouts.fetch_add(1, Relaxed);
            let ms = self.target.timeout.map_or(0, |t| t.as_millis());
            if n <= 10 || n.is_power_of_two() {
                tracing::error!(redis = %self.target.addr, count = n,
                    "Redis did not answer within {ms} ms (engine.redis_timeout_ms); the connection is reopened with backoff");
            }
            return Reply::err(format!(
                "ERR dragonfly-mle: Redis at {} did not answer within {ms} ms; reconnecting",
                self.target.addr
            ));
        }
        if n <= 10 || n.is_power_of_two() {
            tracing::error!(redis = %self.target.addr, count = n,
                "connection to Redis lost: {e}; commands fail until it is back (reconnecting with backoff)");
        }
        Reply::err(format!(
            "ERR dragonfly-mle: connection to Redis at {} lost: {e}",
            self.target.addr
        ))
    }

    fn connection(&mut self) -> Result<&mut Link, Reply> {
        if self.con.is_none() {
            if Instant::now() < self.next_try {
                return Err(Reply::err(format!(
                    "ERR dragonfly-mle: Redis at {} is unreachable; retrying",
                    self.target.addr
                )));
            }
            match self.target.open() {
                Ok(c) => {
                    self.con = Some(c);
                    self.backoff = BACKOFF_MIN;
                    self.target.counters.reconnects.fetch_add(1, Relaxed);
                    tracing::info!(redis = %self.target.addr, "reconnected to Redis");
                }
                Err(e) => {
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    return Err(self.lost(&e));
                }
            }
        }
        Ok(self.con.as_mut().expect("connected above"))
    }

    fn send(&mut self, packed: &[u8], blocking: bool) -> Reply {
        self.target.counters.commands.fetch_add(1, Relaxed);
        let timeout = self.target.timeout;
        let con = match self.connection() {
            Ok(c) => c,
            Err(r) => return r,
        };
        if blocking && timeout.is_some() {
            let _ = con.set_read_timeout(None);
        }
        let res = con.req(packed);
        if blocking && timeout.is_some() {
            let _ = con.set_read_timeout(timeout);
        }
        self.answer(res)
    }

    /// One command (packed) and its reply, on the link as it is (no reconnect).
    fn request(&mut self, packed: &[u8]) -> Reply {
        let res = match self.con.as_mut() {
            Some(c) => c.req(packed),
            None => {
                return Reply::err(format!(
                    "ERR dragonfly-mle: connection to Redis at {} lost",
                    self.target.addr
                ))
            }
        };
        self.answer(res)
    }

    /// The reply model of a result: a server error is an error reply; an I/O error loses the
    /// connection.
    fn answer(&mut self, res: redis::RedisResult<Value>) -> Reply {
        match res {
            Ok(v) => from_value(v),
            Err(e) => match server_error(&e) {
                Some(r) if !e.is_io_error() => r,
                _ => self.lost(&e),
            },
        }
    }

    /// Send the appended commands not sent yet, in one write.
    fn send_unsent(&mut self) {
        let n = self.unsent_kinds.len();
        if n == 0 {
            return;
        }
        let packed = std::mem::take(&mut self.unsent);
        let ends = std::mem::take(&mut self.unsent_ends);
        let kinds = std::mem::take(&mut self.unsent_kinds);
        self.target.counters.commands.fetch_add(n as u64, Relaxed);
        let con = match self.connection() {
            Ok(c) => c,
            Err(r) => {
                for k in kinds {
                    self.route(k, r.clone());
                }
                return;
            }
        };
        match con {
            Link::One(c) => match c.send(&packed) {
                Ok(()) => self.in_flight.extend(kinds),
                Err(e) => {
                    self.in_flight.extend(kinds);
                    self.fail_pending(&e);
                }
            },
            Link::Cluster(_) => {
                let slots = std::mem::take(&mut self.unsent_slots);
                self.run_on_cluster(&packed, &ends, kinds, &slots);
            }
        }
        // keep the buffers' allocations for the next commands
        self.unsent = packed;
        self.unsent.clear();
        self.unsent_ends = ends;
        self.unsent_ends.clear();
    }

    /// Appended commands on a cluster: per node in one write each where the slot map says
    /// where their keys are; the rest (keyless, several keys, redirected) one at a time
    /// through the cluster connection, which follows redirections. Replies in order.
    fn run_on_cluster(
        &mut self,
        packed: &[u8],
        ends: &[usize],
        kinds: Vec<Kind>,
        slots: &[Option<u16>],
    ) {
        use crate::cluster_pipe::{Outcome, SlotMap};
        if self.pipes.map.is_none() && slots.iter().any(Option::is_some) {
            let mut q = Vec::new();
            pack_into(&mut q, &[b"CLUSTER".to_vec(), b"SLOTS".to_vec()]);
            if let Some(con) = self.con.as_mut() {
                if let Ok(v) = con.req(&q) {
                    self.pipes.map = SlotMap::parse(&v);
                }
            }
        }
        let mut cmds = Vec::with_capacity(kinds.len());
        let mut start = 0;
        for (i, &end) in ends.iter().enumerate() {
            cmds.push((&packed[start..end], slots.get(i).copied().flatten()));
            start = end;
        }
        let outcomes = self.pipes.run(
            &cmds,
            self.target.timeout,
            self.target.spin,
            self.target.limits,
        );
        for ((cmd, _), (k, o)) in cmds.iter().zip(kinds.into_iter().zip(outcomes)) {
            let r = match o {
                Outcome::Reply(r) => r,
                Outcome::Elsewhere | Outcome::Redirected => {
                    if self.con.is_some() {
                        self.request(cmd)
                    } else {
                        // lost: the rest fail without trying
                        Reply::err(format!(
                            "ERR dragonfly-mle: connection to Redis at {} lost",
                            self.target.addr
                        ))
                    }
                }
            };
            self.route(k, r);
        }
    }

    /// Where the reply to a command of kind `k` goes.
    fn route(&mut self, k: Kind, r: Reply) {
        match k {
            Kind::Appended => self.replies.push_back(r),
            Kind::Ticket(t) => {
                self.tickets.insert(t, r);
            }
        }
    }

    /// Read the reply to the oldest command in flight into `replies`.
    fn read_one(&mut self) {
        let Some(Link::One(con)) = self.con.as_mut() else {
            // (cannot happen: losing the connection settles what was in flight, and a
            // cluster link answers as it sends)
            let r = Reply::err("ERR dragonfly-mle: connection to Redis lost");
            while let Some(k) = self.in_flight.pop_front() {
                self.route(k, r.clone());
            }
            return;
        };
        match con.recv() {
            Ok(v) => {
                let k = self.in_flight.pop_front().expect("a command in flight");
                self.route(k, from_value(v));
            }
            Err(e) => match server_error(&e) {
                Some(r) if !e.is_io_error() => {
                    let k = self.in_flight.pop_front().expect("a command in flight");
                    self.route(k, r);
                }
                _ => self.fail_pending(&e),
            },
        }
    }

    /// The connection failed with `e`: every command in flight gets the error as its reply,
    /// in order.
    fn fail_pending(&mut self, e: &redis::RedisError) {
        let r = self.lost(e);
        while let Some(k) = self.in_flight.pop_front() {
            self.route(k, r.clone());
        }
    }

    /// Send what is unsent and read every reply in flight (before a command whose reply must
    /// come after theirs).
    fn settle(&mut self) {
        self.send_unsent();
        while !self.in_flight.is_empty() {
            self.read_one();
        }
    }

    fn queue(&mut self, args: &[Vec<u8>], kind: Kind) {
        pack_into(&mut self.unsent, args);
        self.unsent_ends.push(self.unsent.len());
        self.unsent_kinds.push(kind);
        if matches!(self.target.addr, RedisAddr::Cluster { .. }) {
            let one = crate::cluster_pipe::one_key(args);
            self.unsent_slots
                .push(one.then(|| crate::cluster_pipe::slot(&args[1])));
        }
        // appended commands go out as they gather; submitted ones when their reply is asked
        // for or the caller flushes (the scheduler does, once nothing else can run)
        if kind == Kind::Appended && self.unsent_kinds.len() >= SEND_EVERY {
            self.send_unsent();
        }
    }
}

/// Who a command's reply is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `append_command`: the next `get_reply`.
    Appended,
    /// `submit`: `await_reply` with this ticket.
    Ticket(u64),
}

/// Appended commands are sent once this many have gathered (or when a reply is asked for):
/// the server starts on them while the script appends the next ones.
const SEND_EVERY: usize = 32;

/// Append `args` to `out` as a RESP array of bulk strings (the form every Redis command is
/// sent in).
fn pack_into(out: &mut Vec<u8>, args: &[Vec<u8>]) {
    let mut n = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(n.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(n.format(a.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

impl Connection for RedisConnection {
    fn command(&mut self, args: &[Vec<u8>]) -> Reply {
        // Replies to appended commands must come before this one's.
        self.settle();
        let mut packed = std::mem::take(&mut self.unsent);
        pack_into(&mut packed, args);
        let r = self.send(&packed, blocking(args));
        packed.clear();
        self.unsent = packed;
        r
    }

    fn append_command(&mut self, args: Vec<Vec<u8>>) {
        self.queue(&args, Kind::Appended);
    }

    fn get_reply(&mut self) -> Option<Reply> {
        if self.replies.is_empty() {
            self.send_unsent();
            while self.replies.is_empty() && !self.in_flight.is_empty() {
                self.read_one();
            }
        }
        self.replies.pop_front()
    }

    fn submit(&mut self, args: &[Vec<u8>]) -> Option<u64> {
        let t = self.next_ticket;
        self.next_ticket += 1;
        self.queue(args, Kind::Ticket(t));
        Some(t)
    }

    fn await_reply(&mut self, ticket: u64) -> Reply {
        loop {
            if let Some(r) = self.tickets.remove(&ticket) {
                return r;
            }
            if self.unsent_kinds.contains(&Kind::Ticket(ticket)) {
                self.send_unsent();
                continue;
            }
            if self.in_flight.is_empty() {
                return Reply::err(format!("ERR dragonfly-mle: no command pending as {ticket}"));
            }
            self.read_one();
        }
    }

    fn flush(&mut self) {
        self.send_unsent();
    }
}

#[cfg(test)]
mod tests {
    use super::blocking;

    fn cmd(words: &str) -> Vec<Vec<u8>> {
        words.split(' ').map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn blocking_commands_are_read_without_the_timeout() {
        for c in [
            "BLPOP q 0",
            "brpop q 5",
            "BLMOVE a b LEFT RIGHT 0",
            "BZPOPMIN z 1",
            "WAIT 1 0",
            "XREAD BLOCK 0 STREAMS s $",
            "xreadgroup GROUP g c block 100 STREAMS s >",
        ] {
            assert!(blocking(&cmd(c)), "{c}");
        }
        for c in [
            "INCR k",
            "LPOP q",
            "XREAD COUNT 1 STREAMS s 0",
            "GET BLOCK",
            "",
        ] {
            assert!(!blocking(&cmd(c)), "{c}");
        }
        assert!(!blocking(&[]));
    }
}
