//! One connection to one Redis server: our own socket (TCP with TCP_NODELAY, or a unix
//! socket), our own bounded RESP reader ([`reader`]: no reply may take more memory than
//! `engine.redis_max_reply_mb`), and a bounded busy-poll before a blocking read.
//!
//! Why our own socket: a reply to a one-at-a-time command on loopback comes back in tens of
//! microseconds, but a thread that sleeps in `read` until it does pays for being put to sleep
//! and woken again, which on a virtual machine costs more than the round trip itself (measured
//! here: 9-11k INCR/s blocking, 25-28k polling). So a read first polls the socket without
//! blocking for up to `spin` (default [`DEFAULT_SPIN`]); only then does it block, with the
//! reply timeout as the socket's read timeout.
//!
//! Signals: a socket read or write with a timeout is never restarted after a signal handler
//! ran (signal(7)), so this connection restarts it itself until its timeout has passed in all:
//! a watchdog tick or a SIGTERM never fails a command, and callers need not hold signals back.
//!
//! Guarantees and cost: the bytes read and the replies parsed are the same either way (the
//! poll only decides when the blocking read starts). Polling burns CPU while it waits, so it
//! adapts: when the last [`MISSES_TO_REST`] polls in a row all ran out without a reply (a
//! remote or busy server), the connection stops polling for the next [`REST`] reads and then
//! tries again, so a slow server costs at most a few percent of a core. At most one thread
//! fewer than the cores the process may use polls at any time (none on one core), and the
//! engine turns polling off when it runs more workers than cores ([`spin_for`]): there the
//! CPU is busy anyway and a poll takes it from the server and the other workers. `spin = 0`
//! turns the poll off.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use redis::{RedisResult, Value};

pub mod reader;

pub use reader::ReplyLimits;

/// How long a read polls before it blocks, unless configured (engine.redis_spin_us).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(100);
/// Polls in a row that found nothing before the connection rests from polling.
pub const MISSES_TO_REST: u32 = 16;
/// Reads done without polling while resting.
pub const REST: u32 = 256;

enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    fn fd(&self) -> RawFd {
        match self {
            Sock::Tcp(s) => s.as_raw_fd(),
            Sock::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// The socket as the parser reads it: poll first (bounded), then block.
struct Reader<'a> {
    sock: &'a mut Sock,
    poll: &'a mut Poll,
    timeout: Option<Duration>,
}

/// The busy-poll's budget and its record of how it has done lately.
#[derive(Debug, Clone)]
struct Poll {
    spin: Duration,
    misses: u32,
    resting: u32,
}

impl Poll {
    /// Whether this read should poll first.
    fn wanted(&mut self) -> bool {
        if self.spin.is_zero() {
            return false;
        }
        if self.resting > 0 {
            self.resting -= 1;
            return false;
        }
        true
    }

    fn hit(&mut self) {
        self.misses = 0;
    }

    fn miss(&mut self) {
        self.misses += 1;
        if self.misses >= MISSES_TO_REST {
            self.misses = 0;
            self.resting = REST;
        }
    }
}

/// Threads polling right now, across the process.
static POLLING: AtomicUsize = AtomicUsize::new(0);

/// The cores this process may use.
pub fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// The poll budget for `threads` threads that talk to Redis: `spin`, or none when there are
/// more such threads than cores (they keep the CPU busy between them; a poll would only take
/// it from the others: measured, 8 workers on 2 cores, 61k -> 46k events/s with polling).
pub fn spin_for(spin: Duration, threads: usize) -> Duration {
    if threads > cores() {
        Duration::ZERO
    } else {
        spin
    }
}

/// How many threads may poll at once: one core fewer than the process may use (the server,
/// if it is local, and the rest of the engine need the others); none on one core.
fn poll_slots() -> usize {
    cores() - 1
}

/// A polling slot, given back when dropped.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        let max = poll_slots();
        POLLING
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        POLLING.fetch_sub(1, Relaxed);
    }
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let slot = if self.poll.wanted() {
            Slot::take()
        } else {
            None
        };
        if slot.is_some() {
            let fd = self.sock.fd();
            let deadline = Instant::now() + self.poll.spin;
            loop {
                // SAFETY: `fd` is this connection's open socket (borrowed through `sock` for
                // the whole call) and `buf` is a valid, writable buffer of `buf.len()` bytes.
                let n = unsafe {
                    libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
                };
                if n >= 0 {
                    self.poll.hit();
                    return Ok(n as usize);
                }
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {}
                    _ => return Err(e),
                }
                if Instant::now() >= deadline {
                    self.poll.miss();
                    break;
                }
                std::hint::spin_loop();
            }
        }
        drop(slot);
        let start = Instant::now();
        loop {
            let r = match self.sock {
                Sock::Tcp(s) => s.read(buf),
                Sock::Unix(s) => s.read(buf),
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    // A read with a timeout is not restarted after a signal handler ran
                    // (signal(7)): go on reading until the timeout has passed in all.
                    if self.timeout.is_some_and(|t| start.elapsed() >= t) {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
                r => return r,
            }
        }
    }
}

/// A connection to one server.
pub struct Resp {
    sock: Sock,
    reader: reader::ReplyReader,
    limits: ReplyLimits,
    poll: Poll,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl Resp {
    /// Connect over TCP to `host:port` (each address the name resolves to in turn, each
    /// within `connect_timeout`).
    pub fn tcp(host: &str, port: u16, connect_timeout: Duration) -> io::Result<Self> {
        use std::net::ToSocketAddrs;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for a in (host, port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, connect_timeout) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    return Ok(Self::new(Sock::Tcp(s)));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Connect to the unix socket at `path`.
    pub fn unix(path: &str) -> io::Result<Self> {
        Ok(Self::new(Sock::Unix(UnixStream::connect(path)?)))
    }

    fn new(sock: Sock) -> Self {
        Self {
            sock,
            reader: reader::ReplyReader::new(),
            limits: ReplyLimits::default(),
            poll: Poll {
                spin: DEFAULT_SPIN,
                misses: 0,
                resting: 0,
            },
            read_timeout: None,
            write_timeout: None,
        }
    }

    /// Poll for up to `spin` before a read blocks (zero: never poll).
    pub fn set_spin(&mut self, spin: Duration) {
        self.poll.spin = spin;
    }

    /// The longest a read waits for a reply and a write for room (None: no limit).
    pub fn set_timeouts(
        &mut self,
        read: Option<Duration>,
        write: Option<Duration>,
    ) -> io::Result<()> {
        self.set_read_timeout(read)?;
        match &self.sock {
            Sock::Tcp(s) => s.set_write_timeout(write)?,
            Sock::Unix(s) => s.set_write_timeout(write)?,
        }
        self.write_timeout = write;
        Ok(())
    }

    /// The longest a read waits for a reply (None: no limit).
    pub fn set_read_timeout(&mut self, read: Option<Duration>) -> io::Result<()> {
        match &self.sock {
            Sock::Tcp(s) => s.set_read_timeout(read)?,
            Sock::Unix(s) => s.set_read_timeout(read)?,
        }
        self.read_timeout = read;
        Ok(())
    }

    /// Write `packed` (one or more commands in RESP) whole. A signal does not cut it short;
    /// the write timeout counts from the start.
    pub fn send(&mut self, mut packed: &[u8]) -> RedisResult<()> {
        let start = Instant::now();
        while !packed.is_empty() {
            let r = match &mut self.sock {
                Sock::Tcp(s) => s.write(packed),
                Sock::Unix(s) => s.write(packed),
            };
            match r {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => packed = &packed[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if self.write_timeout.is_some_and(|t| start.elapsed() >= t) {
                        return Err(io::Error::from(io::ErrorKind::TimedOut).into());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// How large a reply may be (see [`reader`]).
    pub fn set_limits(&mut self, limits: ReplyLimits) {
        self.limits = limits;
    }

    /// Read the next reply (an error reply is `Value::ServerError`). A signal does not cut
    /// the wait short; the read timeout counts from the start of each read. A reply past the
    /// limits is an `InvalidData` I/O error: the caller drops the connection.
    pub fn recv(&mut self) -> RedisResult<Value> {
        let mut src = Reader {
            sock: &mut self.sock,
            poll: &mut self.poll,
            timeout: self.read_timeout,
        };
        Ok(self.reader.read(&mut src, self.limits)?)
    }

    /// One command and its reply.
    pub fn request(&mut self, packed: &[u8]) -> RedisResult<Value> {
        self.send(packed)?;
        self.recv()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_rests_after_a_run_of_misses_and_comes_back() {
        let mut p = Poll {
            spin: DEFAULT_SPIN,
            misses: 0,
            resting: 0,
        };
        for _ in 0..MISSES_TO_REST {
            assert!(p.wanted());
            p.miss();
        }
        for _ in 0..REST {
            assert!(!p.wanted());
        }
        assert!(p.wanted());
        p.hit();
        // one hit resets the run
        for _ in 0..MISSES_TO_REST - 1 {
            p.miss();
        }
        p.hit();
        p.miss();
        assert!(p.wanted());
    }

    #[test]
    fn zero_spin_never_polls() {
        let mut p = Poll {
            spin: Duration::ZERO,
            misses: 0,
            resting: 0,
        };
        assert!(!p.wanted());
    }
}
