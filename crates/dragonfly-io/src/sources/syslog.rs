//! `syslog://`: syslog messages (RFC 5424 and RFC 3164) as events.
//!
//! - `syslog://PATH`: a unix datagram socket bound at PATH, one message per datagram (what
//!   the original engine's `syslog://` was, and what `logger -u PATH` and syslog daemons
//!   forwarding to a socket write);
//! - `syslog://udp:HOST:PORT`: UDP, one message per datagram;
//! - `syslog://tcp:HOST:PORT`: TCP (RFC 6587), each message either octet-counted
//!   (`LEN SP MSG`) or ended by a newline, told apart message by message.
//!
//! Each message becomes one JSON event. A message whose body is a JSON object (Suricata's
//! EVE over syslog, JSON-logging apps) is that object with a `syslog` field added holding the
//! header; any other is `{"event_type":"syslog","syslog":{...},"message":"..."}`. The header
//! has `facility`, `severity` (numbers, from PRI), `timestamp`, `hostname`, `app_name`,
//! `procid`, `msgid` (RFC 5424; absent when `-`), and `structured_data` (`{"id":{"k":"v"}}`).
//! A message that fits neither RFC is kept whole as `message`, header `{}`. Datagrams are read
//! as the socket inputs read them: never blocking on the pipeline, held up to `buffer_mb`.

use std::io;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::{io_error, Collector, SourceCtx};

/// `syslog://PATH`, `syslog://udp:HOST:PORT`, `syslog://tcp:HOST:PORT`.
pub const SYSLOG: super::SourceScheme = super::SourceScheme {
    name: "syslog",
    form: "syslog://PATH | syslog://udp:HOST:PORT | syslog://tcp:HOST:PORT",
    finite: false,
    // mode, owner and group apply to the socket file of syslog://PATH
    options: super::socket::SYSLOG_OPTIONS,
    query: &[],
    parse: |uri, rest, options| {
        let transport = if let Some(addr) = rest.strip_prefix("udp:") {
            Transport::Udp(addr.to_string())
        } else if let Some(addr) = rest.strip_prefix("tcp:") {
            Transport::Tcp(addr.to_string())
        } else {
            Transport::Unix(crate::uri::path(rest))
        };
        if let Transport::Udp(a) | Transport::Tcp(a) = &transport {
            if a.rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            {
                return Err(crate::UriError::BadAddress(format!(
                    "{uri}: expected HOST:PORT after udp: or tcp:"
                )));
            }
        }
        Ok(Box::new(SyslogInput {
            transport,
            opts: super::socket::SocketOptions::parse(options)?,
        }))
    },
};

#[derive(Debug)]
enum Transport {
    Unix(PathBuf),
    Udp(String),
    Tcp(String),
}

#[derive(Debug)]
struct SyslogInput {
    transport: Transport,
    opts: super::socket::SocketOptions,
}

impl super::Source for SyslogInput {
    fn scheme(&self) -> &'static super::SourceScheme {
        &SYSLOG
    }
    fn path(&self) -> Option<&Path> {
        match &self.transport {
            Transport::Unix(p) => Some(p),
            _ => None,
        }
    }
    fn check(&self, found: &mut crate::preflight::Findings, what: &str) {
        match &self.transport {
            Transport::Unix(p) => {
                if let Err(e) = crate::preflight::socket_bindable(p) {
                    found.problem(format!("{what}: {e}"));
                }
            }
            Transport::Udp(a) => crate::preflight::listen_address(a, true, found, what),
            Transport::Tcp(a) => crate::preflight::listen_address(a, false, found, what),
        }
    }
    fn prepare(&self, _max_line: usize) -> io::Result<Box<dyn super::Prepared>> {
        let named = |a: &str, e: io::Error| io::Error::new(e.kind(), format!("bind {a}: {e}"));
        let sock = match &self.transport {
            Transport::Unix(p) => {
                super::ipc::remove_stale_socket(p)?;
                Socket::Unix(
                    self.opts.bind(p, || {
                        UnixDatagram::bind(p).map_err(|e| named(&p.display().to_string(), e))
                    })?,
                    p.clone(),
                )
            }
            Transport::Udp(a) => Socket::Udp(UdpSocket::bind(a).map_err(|e| named(a, e))?),
            Transport::Tcp(a) => {
                let l = TcpListener::bind(a).map_err(|e| named(a, e))?;
                l.set_nonblocking(true)?;
                Socket::Tcp(l)
            }
        };
        Ok(Box::new(Opened {
            sock,
            stream: self.opts.stream,
            buffer_bytes: self.opts.buffer_mb << 20,
        }))
    }
}

enum Socket {
    Unix(UnixDatagram, PathBuf),
    Udp(UdpSocket),
    Tcp(TcpListener),
}

struct Opened {
    sock: Socket,
    stream: super::stream::StreamOptions,
    buffer_bytes: usize,
}

impl super::Prepared for Opened {
    fn run(self: Box<Self>, mut ctx: SourceCtx) {
        let forwarder = super::ipc::buffered(&mut ctx, self.buffer_bytes);
        let stream = self.stream;
        if !matches!(self.sock, Socket::Tcp(_)) {
            ctx.ready("listening");
        }
        match self.sock {
            Socket::Unix(s, path) => {
                let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
                datagrams(&mut ctx, s.as_raw_fd());
                let _ = std::fs::remove_file(path);
            }
            Socket::Udp(s) => {
                let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
                datagrams(&mut ctx, s.as_raw_fd());
            }
            Socket::Tcp(l) => listen(l, &mut ctx, stream),
        }
        drop(ctx);
        let _ = forwarder.join();
    }
}

/// One message per datagram. A datagram larger than the buffer (up to 4 MiB, or
/// `max_line_bytes`) is counted as `truncated` and skipped, never parsed cut short.
fn datagrams(ctx: &mut SourceCtx, fd: std::os::fd::RawFd) {
    use nix::sys::socket::{recv, MsgFlags};
    let mut col = Collector::new(ctx);
    let mut buf = vec![
        0u8;
        super::ipc::MAX_DATAGRAM
            .min(ctx.max_line + 2)
            .max(64 * 1024)
    ];
    let mut out = Vec::new();
    while !ctx.stopping() && !col.closed() {
        match recv(fd, &mut buf, MsgFlags::MSG_TRUNC) {
            Ok(n) if n > buf.len() => {
                let (c, log) = crate::ratelimit::bump(&ctx.counters.truncated);
                if log {
                    tracing::warn!(input = %ctx.tag, bytes = n, max = buf.len(), count = c,
                        "skipped a syslog message larger than the receive buffer");
                }
            }
            Ok(n) => {
                to_event(&buf[..n], &mut out);
                col.message(ctx, &out);
                col.flush(ctx);
            }
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                io_error(ctx, "receive failed", &io::Error::from(e));
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    col.flush(ctx);
}

fn listen(l: TcpListener, ctx: &mut SourceCtx, opts: super::stream::StreamOptions) {
    super::stream::serve(
        ctx,
        opts,
        move || tokio::net::TcpListener::from_std(l),
        |ctx| TcpFraming::new(ctx.max_line),
    );
}

/// One TCP connection's framing: octet-counted or newline-ended messages (RFC 6587). Never
/// holds more than about `max_line_bytes` of one message: a longer one (a line with no
/// newline, a count past the maximum) is counted as `oversized` and skipped as it streams
/// by. The bytes of a newline-ended message still arriving are scanned once, not again on
/// every read.
struct TcpFraming {
    max: usize,
    pending: Vec<u8>,
    /// Bytes at the start of `pending` known to hold no newline.
    scanned: usize,
    /// Bytes still to drop of a message being skipped: a count, or "until a newline".
    skip: Skip,
    out: Vec<u8>,
}

impl TcpFraming {
    fn new(max: usize) -> Self {
        Self {
            max,
            pending: Vec::new(),
            scanned: 0,
            skip: Skip::None,
            out: Vec::new(),
        }
    }
}

impl super::stream::Framing for TcpFraming {
    fn push(&mut self, mut data: &[u8], col: &mut Collector, ctx: &mut SourceCtx) -> bool {
        match self.skip {
            Skip::Bytes(left) => {
                let k = left.min(data.len());
                data = &data[k..];
                self.skip = if left > k {
                    Skip::Bytes(left - k)
                } else {
                    Skip::None
                };
            }
            Skip::Line => match memchr::memchr(b'\n', data) {
                Some(i) => {
                    data = &data[i + 1..];
                    self.skip = Skip::None;
                }
                None => data = &[],
            },
            Skip::None => {}
        }
        self.pending.extend_from_slice(data);
        let mut used = 0;
        let mut messages = false;
        while let Some((msg, next)) = next_frame(&self.pending[used..], self.max, self.scanned) {
            self.scanned = 0;
            match msg {
                Some(m) => {
                    to_event(m, &mut self.out);
                    col.message(ctx, &self.out);
                    messages = true;
                }
                None => col.frame(ctx, crate::Frame::Oversized(next)),
            }
            used += next;
        }
        self.pending.drain(..used);
        // what is left holds no newline: the next read scans only what it adds
        self.scanned = self.pending.len();
        if let Some((len, start)) = oversized_count(&self.pending, self.max) {
            // an octet count past the maximum: drop it as it arrives
            col.frame(ctx, crate::Frame::Oversized(len));
            let have = self.pending.len() - start;
            self.skip = Skip::Bytes(len - have);
            self.pending.clear();
            self.scanned = 0;
        } else if self.pending.len() > self.max + 16 {
            // a line with no newline in sight
            col.frame(ctx, crate::Frame::Oversized(self.pending.len()));
            self.pending.clear();
            self.scanned = 0;
            self.skip = Skip::Line;
        }
        if self.pending.capacity() > (1 << 20).max(4 * self.pending.len()) {
            // a long message came and went: give its buffer back
            self.pending
                .shrink_to((2 * self.pending.len()).max(64 * 1024));
        }
        messages
    }

    fn held(&self) -> usize {
        self.pending.len()
    }

    fn abandon(&mut self) -> usize {
        let dropped = self.pending.len();
        if dropped == 0 {
            return 0;
        }
        self.skip = match octet_count(&self.pending) {
            Some((len, start)) => Skip::Bytes(len.saturating_sub(self.pending.len() - start)),
            None => Skip::Line,
        };
        self.pending.clear();
        self.pending.shrink_to(64 * 1024);
        self.scanned = 0;
        dropped
    }

    fn finish(&mut self, col: &mut Collector, ctx: &mut SourceCtx) {
        // what is left without a newline at the end of the stream is the last message
        if self.skip == Skip::None
            && !self.pending.is_empty()
            && !self.pending.iter().all(u8::is_ascii_whitespace)
        {
            to_event(&self.pending, &mut self.out);
            col.message(ctx, &self.out);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    None,
    Bytes(usize),
    Line,
}

/// The octet count at the start of `b` (`LEN SP`): (count, where the message starts).
fn octet_count(b: &[u8]) -> Option<(usize, usize)> {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 9 || b.get(digits) != Some(&b' ') {
        return None;
    }
    let len: usize = std::str::from_utf8(&b[..digits]).ok()?.parse().ok()?;
    Some((len, digits + 1))
}

/// An incomplete octet-counted message whose count is past `max`: (count, where it starts).
fn oversized_count(b: &[u8], max: usize) -> Option<(usize, usize)> {
    octet_count(b).filter(|&(len, _)| len > max)
}

/// The next message of a TCP stream: `(message, bytes used)`, or None when it is incomplete.
/// A message over `max` bytes is `(None, its length)`, skipped. The first `scanned` bytes
/// are known to hold no newline (a newline-ended message whose start was seen before).
fn next_frame(b: &[u8], max: usize, scanned: usize) -> Option<(Option<&[u8]>, usize)> {
    // octet counting: digits, one space, that many bytes
    if let Some((len, start)) = octet_count(b) {
        if len > max {
            return (b.len() >= start + len).then_some((None, start + len));
        }
        return (b.len() >= start + len).then(|| (Some(&b[start..start + len]), start + len));
    }
    // newline ended
    let from = scanned.min(b.len());
    let end = from + memchr::memchr(b'\n', &b[from..])?;
    if end > max {
        return Some((None, end + 1));
    }
    let line = &b[..end];
    Some((Some(line.strip_suffix(b"\r").unwrap_or(line)), end + 1))
}

/// The JSON event of one syslog message, into `out` (cleared first).
pub fn to_event(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let (header, body) = parse(text);
    let header = Value::Object(header);
    let trimmed = body.trim();
    if trimmed.starts_with('{') {
        if let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(trimmed) {
            obj.insert("syslog".into(), header);
            let _ = serde_json::to_writer(&mut *out, &obj);
            return;
        }
    }
    let mut ev = Map::new();
    ev.insert("event_type".into(), "syslog".into());
    ev.insert("syslog".into(), header);
    ev.insert("message".into(), body.into());
    let _ = serde_json::to_writer(&mut *out, &Value::Object(ev));
}

/// Split a message into its header fields and its body.
pub fn parse(s: &str) -> (Map<String, Value>, &str) {
    let mut h = Map::new();
    let Some(rest) = s.strip_prefix('<') else {
        return (h, s);
    };
    let Some(close) = rest.find('>').filter(|&i| (1..=3).contains(&i)) else {
        return (h, s);
    };
    let Ok(pri) = rest[..close].parse::<u8>() else {
        return (h, s);
    };
    if pri > 191 {
        return (h, s);
    }
    h.insert("facility".into(), (pri / 8).into());
    h.insert("severity".into(), (pri % 8).into());
    let rest = &rest[close + 1..];
    // RFC 5424: a version number, then a space
    if let Some(after) = rest.strip_prefix("1 ") {
        return rfc5424(h, after);
    }
    rfc3164(h, rest)
}

fn nil_or(h: &mut Map<String, Value>, key: &str, v: &str) {
    if v != "-" {
        h.insert(key.into(), v.into());
    }
}

fn rfc5424(mut h: Map<String, Value>, s: &str) -> (Map<String, Value>, &str) {
    let mut rest = s;
    for key in ["timestamp", "hostname", "app_name", "procid", "msgid"] {
        let (field, r) = rest.split_once(' ').unwrap_or((rest, ""));
        nil_or(&mut h, key, field);
        rest = r;
    }
    // structured data: "-" or one or more [id k="v" ...]
    if let Some(r) = rest.strip_prefix('-') {
        rest = r.strip_prefix(' ').unwrap_or(r);
    } else if rest.starts_with('[') {
        let (sd, r) = structured_data(rest);
        h.insert("structured_data".into(), Value::Object(sd));
        rest = r.strip_prefix(' ').unwrap_or(r);
    }
    let body = rest.strip_prefix('\u{feff}').unwrap_or(rest);
    (h, body)
}

/// `[id k="v" k2="v\"2"][id2 ...]` -> `{"id":{"k":"v","k2":"v\"2"},"id2":{}}`, and the rest.
fn structured_data(mut s: &str) -> (Map<String, Value>, &str) {
    let mut sd = Map::new();
    while let Some(r) = s.strip_prefix('[') {
        let id_end = r.find([' ', ']']).unwrap_or(r.len());
        let id = &r[..id_end];
        let mut params = Map::new();
        let mut p = &r[id_end..];
        loop {
            p = p.trim_start_matches(' ');
            if let Some(after) = p.strip_prefix(']') {
                p = after;
                break;
            }
            let Some(eq) = p.find("=\"") else {
                return (sd, "");
            };
            let name = &p[..eq];
            let mut value = String::new();
            let mut chars = p[eq + 2..].char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = Some(eq + 2 + i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let Some(end) = end else {
                return (sd, "");
            };
            params.insert(name.to_string(), value.into());
            p = &p[end..];
        }
        sd.insert(id.to_string(), Value::Object(params));
        s = p;
    }
    (sd, s)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn rfc3164(mut h: Map<String, Value>, s: &str) -> (Map<String, Value>, &str) {
    // "Mmm dd hh:mm:ss " (dd may be space-padded)
    let mut rest = s;
    if s.len() >= 16
        && s.is_char_boundary(15)
        && MONTHS.contains(&&s[..3])
        && s.as_bytes()[3] == b' '
        && s.as_bytes()[15] == b' '
    {
        h.insert("timestamp".into(), s[..15].into());
        rest = &s[16..];
    }
    // then HOSTNAME (absent from local syslog(3) messages) and TAG[PID]:
    let first = rest.split(' ').next().unwrap_or("");
    if !first.is_empty() && !first.ends_with(':') && !first.contains('[') {
        if let Some((host, r)) = rest.split_once(' ') {
            let next = r.split(' ').next().unwrap_or("");
            if next.ends_with(':') || next.contains("]:") {
                h.insert("hostname".into(), host.into());
                rest = r;
            }
        }
    }
    let tag_end = rest
        .find(": ")
        .filter(|&i| !rest[..i].contains(' ') && i > 0 && i <= 48 + 10);
    if let Some(i) = tag_end {
        let tag = &rest[..i];
        match tag.split_once('[') {
            Some((app, pid)) => {
                h.insert("app_name".into(), app.into());
                h.insert("procid".into(), pid.trim_end_matches(']').into());
            }
            None => {
                h.insert("app_name".into(), tag.into());
            }
        }
        rest = &rest[i + 2..];
    }
    (h, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(s: &str) -> Value {
        let mut out = Vec::new();
        to_event(s.as_bytes(), &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn rfc5424_with_structured_data() {
        let e = ev(
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"] An application event log entry..."#,
        );
        assert_eq!(
            e,
            json!({"event_type":"syslog","message":"An application event log entry...","syslog":{
                "facility":20,"severity":5,"timestamp":"2003-10-11T22:14:15.003Z",
                "hostname":"mymachine.example.com","app_name":"evntslog","msgid":"ID47",
                "structured_data":{"exampleSDID@32473":{"iut":"3","eventSource":"Application","eventID":"1011"},
                    "examplePriority@32473":{"class":"high"}}}})
        );
    }

    #[test]
    fn rfc3164_with_and_without_hostname() {
        let e =
            ev("<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed for lonvick on /dev/pts/8");
        assert_eq!(e["syslog"]["hostname"], "mymachine");
        assert_eq!(e["syslog"]["app_name"], "su");
        assert_eq!(e["syslog"]["procid"], "230");
        assert_eq!(e["syslog"]["facility"], 4);
        assert_eq!(e["syslog"]["severity"], 2);
        assert_eq!(e["message"], "'su root' failed for lonvick on /dev/pts/8");
        let e = ev("<13>Nov  5 10:01:02 myapp: hello world");
        assert_eq!(e["syslog"]["timestamp"], "Nov  5 10:01:02");
        assert!(e["syslog"].get("hostname").is_none());
        assert_eq!(e["syslog"]["app_name"], "myapp");
        assert_eq!(e["message"], "hello world");
    }

    #[test]
    fn a_json_body_is_the_event() {
        let e = ev(
            r#"<14>1 2026-11-29T07:00:00Z sensor suricata 42 - - {"event_type":"alert","src_ip":"10.0.0.1"}"#,
        );
        assert_eq!(e["event_type"], "alert");
        assert_eq!(e["src_ip"], "10.0.0.1");
        assert_eq!(e["syslog"]["app_name"], "suricata");
        assert_eq!(e["syslog"]["procid"], "42");
    }

    #[test]
    fn anything_else_is_kept_whole() {
        assert_eq!(ev("no header at all")["message"], "no header at all");
        assert_eq!(ev("<999>too big")["message"], "<999>too big");
        assert_eq!(ev("")["message"], "");
    }

    #[test]
    fn tcp_frames_octet_counted_and_newline_ended() {
        let b = b"11 <13>1 - - -<14>hi\r\nrest";
        let (m, n) = next_frame(b, 1000, 0).unwrap();
        assert_eq!(m.unwrap(), b"<13>1 - - -");
        let (m, n2) = next_frame(&b[n..], 1000, 0).unwrap();
        assert_eq!(m.unwrap(), b"<14>hi");
        assert!(next_frame(&b[n + n2..], 1000, 0).is_none(), "incomplete");
        assert!(next_frame(b"3 ab", 1000, 0).is_none(), "incomplete count");
        // over the maximum: skipped whole
        assert_eq!(next_frame(b"5 hello", 3, 0), Some((None, 7)));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_make_one_json_event(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            to_event(&b, &mut out);
            proptest::prop_assert!(serde_json::from_slice::<Value>(&out).is_ok());
            let _ = next_frame(&b, 100, 0);
        }
    }
}
