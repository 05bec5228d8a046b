//! `dragonfly.http_get` over `https://`: a local TLS server with a CA of its own (made here
//! with openssl, served by Python's ssl module). Trusted when the CA is among the roots
//! (`SSL_CERT_FILE`), refused otherwise.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(60);

fn sh(dir: &std::path::Path, cmd: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "{cmd}");
}

/// A CA, a server certificate for 127.0.0.1 signed by it, and an HTTPS server on a free port
/// serving `dir`. Killed on drop.
struct TlsServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TlsServer {
    fn start() -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        sh(d, "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=dragonfly-test-ca");
        sh(
            d,
            "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1",
        );
        std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        sh(d, "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf");
        std::fs::create_dir(d.join("www")).unwrap();
        std::fs::write(d.join("www/list.txt"), "203.0.113.9\n198.51.100.2\n").unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let script = format!(
            r#"
import http.server, ssl, functools
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory="www")
s = http.server.HTTPServer(("127.0.0.1", {port}), h)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
c.load_cert_chain("srv.pem", "srv.key")
s.socket = c.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#
        );
        let child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(LIMIT, "the TLS server to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        TlsServer { child, port, dir }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fetching_root(port: u16) -> Root {
    let r = Root::passthrough("file://in.json");
    r.write("in.json", "{\"seq\":1}\n");
    r.write(
        "analyzer/pass.lua",
        &format!(
            r#"
function setup()
  dragonfly.http_get("https://127.0.0.1:{port}/list.txt", "list.txt")
  bad = {{}}
  for line in io.lines("list.txt") do bad[#bad + 1] = line end
end
function loop(msg)
  msg.bad = bad
  dragonfly.output_event(default_output, msg)
end"#
        ),
    );
    r
}

#[test]
fn https_downloads_are_verified_against_the_roots() {
    let srv = TlsServer::start();
    // trusted: the test CA is the root
    let r = fetching_root(srv.port);
    let out = r
        .command(&["--exit-on-eof"])
        .env("SSL_CERT_FILE", srv.dir.path().join("ca.pem"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let j: serde_json::Value = serde_json::from_str(&r.lines("out.json")[0]).unwrap();
    assert_eq!(j["bad"], serde_json::json!(["203.0.113.9", "198.51.100.2"]));

    // not trusted: the system's roots do not know this CA; setup() fails, naming the URL
    let r = fetching_root(srv.port);
    let out = r
        .command(&["--exit-on-eof"])
        .env("SSL_CERT_FILE", "/nonexistent-roots.pem")
        .env("SSL_CERT_DIR", "/nonexistent-dir")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "dragonfly.http_get(https://127.0.0.1:{}/list.txt)",
            srv.port
        )),
        "{err}"
    );
    assert!(!r.path().join("list.txt").exists());
}
