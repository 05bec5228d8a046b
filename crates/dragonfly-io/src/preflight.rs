//! Checks that change nothing: what a start would find when it opens a file, binds a socket
//! or creates a directory, found before it does (`--check`, and the start's own warnings).
//!
//! Behaviour: each check asks the kernel as the calling process (`access(2)` with the real
//! user and groups, so a read-only mount, ACLs, supplementary groups and a systemd sandbox
//! count as they will at the start), creates nothing, and says what it found as a problem
//! (the start would fail, or the engine would run blind) or a warning (the start goes on, but
//! does something the operator may not expect, such as creating a directory). Cost: a few
//! `stat`/`access` calls per path; a bind test for a network listener.

use std::io;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};

use nix::unistd::{access, AccessFlags};

/// What the checks found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    /// The start would fail, or run without doing its job.
    pub problems: Vec<String>,
    /// The start goes on, and does something worth saying.
    pub warnings: Vec<String>,
}

impl Findings {
    /// A problem.
    pub fn problem(&mut self, m: impl Into<String>) {
        self.problems.push(m.into());
    }

    /// A warning.
    pub fn warning(&mut self, m: impl Into<String>) {
        self.warnings.push(m.into());
    }

    /// Everything `other` found, too.
    pub fn extend(&mut self, other: Findings) {
        self.problems.extend(other.problems);
        self.warnings.extend(other.warnings);
    }
}

/// What `access(2)` says, as a message (`Permission denied (os error 13)`, ...).
fn may(path: &Path, flags: AccessFlags) -> Result<(), String> {
    access(path, flags).map_err(|e| io::Error::from(e).to_string())
}

/// The deepest directory of `path`'s ancestors (or `path` itself) that exists.
fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    let mut p = path.to_path_buf();
    loop {
        if std::fs::symlink_metadata(&p).is_ok() {
            return Some(p);
        }
        if !p.pop() || p.as_os_str().is_empty() {
            return Some(PathBuf::from("."));
        }
    }
}

/// Directory `dir` exists and the caller may create files in it, or it can be created (the
/// deepest existing ancestor is a directory the caller may write). `Ok(true)` when it exists,
/// `Ok(false)` when the start would create it; `Err` names what stands in the way.
pub fn dir_usable(dir: &Path) -> Result<bool, String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => may(dir, AccessFlags::W_OK | AccessFlags::X_OK)
            .map(|()| true)
            .map_err(|e| {
                format!(
                    "directory {}: cannot create files in it: {e}",
                    dir.display()
                )
            }),
        Ok(_) => Err(format!("{} is not a directory", dir.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let base = existing_ancestor(dir).unwrap_or_else(|| PathBuf::from("/"));
            match std::fs::metadata(&base) {
                Ok(m) if m.is_dir() => may(&base, AccessFlags::W_OK | AccessFlags::X_OK)
                    .map(|()| false)
                    .map_err(|e| {
                        format!(
                            "directory {} does not exist and cannot be created in {}: {e}",
                            dir.display(),
                            base.display()
                        )
                    }),
                _ => Err(format!(
                    "directory {} cannot be created: {} is not a directory",
                    dir.display(),
                    base.display()
                )),
            }
        }
        Err(e) => Err(format!("directory {}: {e}", dir.display())),
    }
}

/// A file the engine appends to (an output, its log): it exists as a regular file (never a
/// link) the caller may write, or its directory is usable. `Ok(Some(dir))` when the start
/// would create the missing directory `dir`.
pub fn file_writable(path: &Path) -> Result<Option<PathBuf>, String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(format!(
            "{} is a symbolic link: the engine never writes through one",
            path.display()
        )),
        Ok(m) if m.is_dir() => Err(format!("{} is a directory", path.display())),
        Ok(_) => may(path, AccessFlags::W_OK)
            .map(|()| None)
            .map_err(|e| format!("{}: cannot write it: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = parent(path);
            dir_usable(&dir).map(|existed| (!existed).then_some(dir))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// A file read now or later (a followed file): if it exists it must be readable; its
/// directory must be searchable and readable (the engine watches it for the file).
pub fn file_readable(path: &Path) -> Result<(), String> {
    let dir = parent(path);
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{} is not a directory", dir.display())),
        Err(e) => return Err(missing_dir(&dir, e)),
    }
    may(&dir, AccessFlags::R_OK | AccessFlags::X_OK)
        .map_err(|e| format!("directory {}: cannot look in it: {e}", dir.display()))?;
    match std::fs::metadata(path) {
        Ok(_) => may(path, AccessFlags::R_OK)
            .map_err(|e| format!("{}: cannot read it: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// A unix socket the engine binds at `path`: its directory must exist and be writable, and
/// what is at `path` must be nothing or an old socket.
pub fn socket_bindable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let dir = parent(path);
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => may(&dir, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| {
            format!(
                "directory {}: cannot create the socket in it: {e}",
                dir.display()
            )
        })?,
        Ok(_) => return Err(format!("{} is not a directory", dir.display())),
        Err(e) => return Err(missing_dir(&dir, e)),
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            Err(format!("{} exists and is not a socket", path.display()))
        }
        _ => Ok(()),
    }
}

/// A TCP or UDP address the engine listens on (`HOST:PORT`): it must resolve, and a bind
/// test must pass. An address in use now is a warning (the engine being checked may be the
/// one holding it); anything else (not a local address, a port the caller may not use) is a
/// problem.
pub fn listen_address(addr: &str, udp: bool, found: &mut Findings, what: &str) {
    let addrs: Vec<_> = match addr.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            found.problem(format!("{what}: {addr}: not an address to listen on: {e}"));
            return;
        }
    };
    let Some(first) = addrs.first() else {
        found.problem(format!("{what}: {addr}: resolves to no address"));
        return;
    };
    let res = if udp {
        std::net::UdpSocket::bind(first).map(drop)
    } else {
        std::net::TcpListener::bind(first).map(drop)
    };
    match res {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => found.warning(format!(
            "{what}: {addr} is in use now (by a running engine?): the start fails unless it is free by then"
        )),
        Err(e) => found.problem(format!("{what}: cannot listen on {addr}: {e}")),
    }
}

/// A directory that cannot be looked at, said plainly.
fn missing_dir(dir: &Path, e: io::Error) -> String {
    if e.kind() == io::ErrorKind::NotFound {
        format!("directory {} does not exist", dir.display())
    } else {
        format!("directory {}: {e}", dir.display())
    }
}

/// `path`'s directory (`.` for a bare name).
pub fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn directories_that_exist_can_be_created_or_cannot() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(dir_usable(d.path()), Ok(true));
        assert_eq!(dir_usable(&d.path().join("a/b")), Ok(false));
        std::fs::write(d.path().join("f"), "").unwrap();
        assert!(dir_usable(&d.path().join("f/x")).is_err());
        assert!(dir_usable(&d.path().join("f")).is_err());
    }

    #[test]
    fn files_are_written_only_as_regular_files() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("out.json");
        assert_eq!(file_writable(&f), Ok(None));
        assert_eq!(
            file_writable(&d.path().join("new/out.json")),
            Ok(Some(d.path().join("new")))
        );
        std::fs::write(&f, "").unwrap();
        assert_eq!(file_writable(&f), Ok(None));
        let link = d.path().join("link.json");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(file_writable(&link).unwrap_err().contains("symbolic link"));
        assert!(file_writable(d.path()).unwrap_err().contains("directory"));
    }

    #[test]
    fn unreadable_files_are_found_when_not_root() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("eve.json");
        assert_eq!(file_readable(&f), Ok(()), "a file to come is fine");
        std::fs::write(&f, "{}\n").unwrap();
        assert_eq!(file_readable(&f), Ok(()));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).unwrap();
        // root reads anything: the check is right to say so
        let root = nix::unistd::geteuid().is_root();
        assert_eq!(file_readable(&f).is_ok(), root);
        assert!(file_readable(&d.path().join("nodir/eve.json")).is_err());
    }

    #[test]
    fn listen_addresses_are_checked() {
        let mut f = Findings::default();
        listen_address("127.0.0.1:99999", false, &mut f, "engine.http");
        assert_eq!(f.problems.len(), 1, "{f:?}");
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap().to_string();
        let mut f = Findings::default();
        listen_address(&addr, false, &mut f, "engine.http");
        assert!(f.problems.is_empty() && f.warnings.len() == 1, "{f:?}");
        let mut f = Findings::default();
        listen_address("127.0.0.1:0", true, &mut f, "x");
        assert_eq!(f, Findings::default());
        let mut f = Findings::default();
        listen_address("192.0.2.1:7070", false, &mut f, "x");
        assert_eq!(f.problems.len(), 1, "not a local address: {f:?}");
    }

    #[test]
    fn sockets_need_a_writable_directory_and_no_other_file() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(socket_bindable(&d.path().join("in.sock")), Ok(()));
        std::fs::write(d.path().join("in.sock"), "").unwrap();
        assert!(socket_bindable(&d.path().join("in.sock")).is_err());
        assert!(socket_bindable(&d.path().join("no/in.sock")).is_err());
    }
}
