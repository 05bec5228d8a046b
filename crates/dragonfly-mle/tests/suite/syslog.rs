//! `syslog://` inputs fed by util-linux's `logger` (RFC 3164 and 5424) over a unix datagram
//! socket, UDP and TCP (octet counting and newline framing), and JSON bodies.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

const T: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn root(uri: &str) -> Root {
    let r = Root::passthrough(uri);
    r.write("analyzer/pass.lua", PASS_READY);
    r
}

fn events(r: &Root, n: usize) -> Vec<serde_json::Value> {
    wait_for(T, &format!("{n} events"), || {
        r.log("out.json").exists() && r.lines("out.json").len() >= n
    });
    r.lines("out.json")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn logger(args: &[&str]) {
    let ok = Command::new("logger")
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "logger {args:?}");
}

#[test]
fn syslog_over_a_unix_socket_takes_rfc3164_and_rfc5424_from_logger() {
    let r = root("syslog://log.sock");
    let child = r.spawn(&[]);
    wait_for(T, "start-up", || r.path().join("ready").exists());
    let sock = r.path().join("log.sock");
    let sock = sock.to_str().unwrap();
    logger(&[
        "-u",
        sock,
        "--rfc3164",
        "-t",
        "sshd",
        "-i",
        "-p",
        "auth.warning",
        "Failed password for root",
    ]);
    logger(&[
        "-u",
        sock,
        "--rfc5424",
        "-t",
        "app",
        "-p",
        "local0.info",
        "--msgid",
        "ID7",
        "--sd-id",
        "meta@1",
        "--sd-param",
        "k=\"v\"",
        "hello 5424",
    ]);
    logger(&[
        "-u",
        sock,
        "-t",
        "suricata",
        r#"{"event_type":"alert","src_ip":"10.1.2.3"}"#,
    ]);
    let ev = events(&r, 3);
    let (st, err) = stop(child, T);
    assert!(st.success(), "{err}");
    let a = &ev[0];
    assert_eq!(a["event_type"], "syslog");
    assert_eq!(a["message"], "Failed password for root", "{a}");
    assert_eq!(a["syslog"]["app_name"], "sshd", "{a}");
    assert_eq!(a["syslog"]["facility"], 4);
    assert_eq!(a["syslog"]["severity"], 4);
    assert!(
        a["syslog"]["procid"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .is_ok(),
        "{a}"
    );
    let b = &ev[1];
    assert_eq!(b["message"], "hello 5424", "{b}");
    assert_eq!(b["syslog"]["app_name"], "app");
    assert_eq!(b["syslog"]["msgid"], "ID7");
    assert_eq!(b["syslog"]["facility"], 16);
    assert_eq!(b["syslog"]["severity"], 6);
    assert_eq!(b["syslog"]["structured_data"]["meta@1"]["k"], "v", "{b}");
    let c = &ev[2];
    assert_eq!(c["event_type"], "alert", "{c}");
    assert_eq!(c["src_ip"], "10.1.2.3");
    assert_eq!(c["syslog"]["app_name"], "suricata");
}

#[test]
fn syslog_over_udp_and_tcp() {
    let (pu, pt) = (free_port(), free_port());
    let ru = root(&format!("syslog://udp:127.0.0.1:{pu}"));
    let rt = root(&format!("syslog://tcp:127.0.0.1:{pt}"));
    let cu = ru.spawn(&[]);
    let ct = rt.spawn(&[]);
    wait_for(T, "start-up", || {
        ru.path().join("ready").exists() && rt.path().join("ready").exists()
    });
    let (pu, pt) = (pu.to_string(), pt.to_string());
    logger(&[
        "-d",
        "-n",
        "127.0.0.1",
        "-P",
        &pu,
        "--rfc5424",
        "-t",
        "udpapp",
        "over udp",
    ]);
    // logger over TCP frames with octet counting
    logger(&[
        "-T",
        "-n",
        "127.0.0.1",
        "-P",
        &pt,
        "--rfc5424",
        "--octet-count",
        "-t",
        "tcpapp",
        "counted",
    ]);
    // and by hand: newline-ended messages, several in one write
    let mut s = std::net::TcpStream::connect(("127.0.0.1", pt.parse::<u16>().unwrap())).unwrap();
    s.write_all(b"<13>Nov  5 10:01:02 host1 a[1]: first\n<13>Nov  5 10:01:03 host1 a[1]: second\n")
        .unwrap();
    drop(s);
    let u = events(&ru, 1);
    let t = events(&rt, 3);
    for (c, r) in [(cu, &ru), (ct, &rt)] {
        let (st, err) = stop(c, T);
        assert!(st.success(), "{err}");
        assert_eq!(r.final_stats()["inputs"]["in"]["io_errors"], 0);
    }
    assert_eq!(u[0]["message"], "over udp");
    assert_eq!(u[0]["syslog"]["app_name"], "udpapp");
    // two connections: each in order, not with each other
    let msgs: Vec<&str> = t.iter().map(|e| e["message"].as_str().unwrap()).collect();
    let mut sorted = msgs.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["counted", "first", "second"]);
    let first = msgs.iter().position(|m| *m == "first").unwrap();
    assert_eq!(msgs[first + 1], "second", "{msgs:?}");
    assert_eq!(t[first]["syslog"]["hostname"], "host1");
    let counted = t.iter().find(|e| e["message"] == "counted").unwrap();
    assert_eq!(counted["syslog"]["app_name"], "tcpapp");
}

#[test]
fn oversized_syslog_messages_are_counted_and_skipped_the_rest_arrives() {
    let pt = free_port();
    let rt = root(&format!("syslog://tcp:127.0.0.1:{pt}"));
    let ru = root("syslog://log.sock");
    for r in [&rt, &ru] {
        let cfg = std::fs::read_to_string(r.path().join("config/config.lua")).unwrap();
        r.config(&format!("{cfg}\nengine = {{ max_line_bytes = 65536 }}\n"));
    }
    let ct = rt.spawn(&[]);
    let cu = ru.spawn(&[]);
    wait_for(T, "start-up", || {
        rt.path().join("ready").exists() && ru.path().join("ready").exists()
    });
    // TCP: a count far past the maximum (its bytes streamed by), a 3 MB line with no end in
    // sight, then good messages
    let mut s = std::net::TcpStream::connect(("127.0.0.1", pt)).unwrap();
    s.write_all(b"999999 ").unwrap();
    s.write_all(&vec![b'a'; 999_999]).unwrap();
    s.write_all(b"6 <13>ok").unwrap();
    s.write_all(&vec![b'b'; 3_000_000]).unwrap();
    s.write_all(b"\n<13>after the long line\n").unwrap();
    drop(s);
    // unix datagram: 200 KB, more than the 64 KiB the engine takes
    let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
    nix::sys::socket::setsockopt(&tx, nix::sys::socket::sockopt::SndBuf, &(1 << 20)).unwrap();
    tx.send_to(&vec![b'c'; 200_000], ru.path().join("log.sock"))
        .unwrap();
    tx.send_to(b"<13>small", ru.path().join("log.sock"))
        .unwrap();
    let t = events(&rt, 2);
    let u = events(&ru, 1);
    let (st, err) = stop(ct, T);
    assert!(st.success(), "{err}");
    let (su, err) = stop(cu, T);
    assert!(su.success(), "{err}");
    let msgs: Vec<&str> = t.iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(msgs, vec!["ok", "after the long line"]);
    assert_eq!(rt.final_stats()["inputs"]["in"]["oversized"], 2);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0]["message"], "small");
    assert_eq!(ru.final_stats()["inputs"]["in"]["truncated"], 1);
}
