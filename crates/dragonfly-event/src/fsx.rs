//! Files the engine writes and reads back itself — input checkpoints, the embedded store's
//! snapshot, downloads, the Parquet manifest — handled so that nothing planted in their place
//! is ever followed or swallowed whole.
//!
//! - [`write_atomic`] writes a temporary beside the file and renames it over the file. The
//!   temporary is created with `O_CREAT|O_EXCL|O_NOFOLLOW`: a symbolic link (or anything else)
//!   planted at its name is removed, never written through (the engine often runs as root, and
//!   a link to `/etc/shadow` at `<checkpoint>.tmp` would otherwise be followed). The rename
//!   replaces whatever is at the file's own name (a link there is replaced, not followed).
//! - [`create_exclusive`] is that creation on its own, for writers that stream.
//! - [`read_capped`] reads a file that must be a regular file of at most a given size, opened
//!   without following a link and without blocking (a FIFO or `/dev/zero` in its place is
//!   refused by its type, a huge file by its size: neither is read into memory).
//!
//! Cost: one extra `unlink` when a stale temporary is found; otherwise the same system calls
//! as a plain write and rename.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Create `path` anew for writing with permissions `mode` (before the umask): exclusively
/// (`O_EXCL`) and never through a link (`O_NOFOLLOW`). Whatever is already at `path` (a stale
/// temporary from a crash, a planted link) is removed first — `unlink` removes a link itself,
/// never its target — and the creation is tried once more; a second clash is an error.
pub fn create_exclusive(path: &Path, mode: u32) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path).map_err(|e| named(path, e))?;
            open().map_err(|e| named(path, e))
        }
        r => r.map_err(|e| named(path, e)),
    }
}

/// The temporary [`write_atomic`] uses for `path`: `<path>.tmp`.
pub fn temp_name(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Replace `path` with `bytes`: written to a temporary made by [`create_exclusive`], synced
/// when `durable`, then renamed over `path`. On failure the temporary is removed and `path`
/// is unchanged.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let tmp = temp_name(path);
    let mut f = create_exclusive(&tmp, mode)?;
    let res = f
        .write_all(bytes)
        .and_then(|()| if durable { f.sync_all() } else { Ok(()) })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(named(path, e));
    }
    Ok(())
}

/// Open `path` with `options`, never through a symbolic link at its last component
/// (`O_NOFOLLOW`) and never blocking on a FIFO (`O_NONBLOCK`, which regular files ignore).
/// A link is an `InvalidInput` error saying so (`verb`: what was refused, "read", "write");
/// other errors name the path.
pub fn open_no_link(options: &mut OpenOptions, path: &Path, verb: &str) -> io::Result<File> {
    options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{}: is a symbolic link; refusing to {verb} through it (replace it with the file itself)",
                        path.display()
                    ),
                )
            } else {
                named(path, e)
            }
        })
}

/// Read `path`, which must be a regular file of at most `max` bytes, opened without following
/// a link and without blocking. A link, a FIFO, a device or a directory is refused
/// (`InvalidInput`), a larger file too (`InvalidData`), before anything is read.
pub fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let f = open_no_link(OpenOptions::new().read(true), path, "read")?;
    let meta = f.metadata().map_err(|e| named(path, e))?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: is not a regular file", path.display()),
        ));
    }
    if meta.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: {} bytes, more than the {max} it may hold",
                path.display(),
                meta.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    f.take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| named(path, e))?;
    if out.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: grew past the {max} bytes it may hold", path.display()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "fsx-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_link_planted_at_the_temporary_is_removed_not_followed() {
        let d = dir();
        let victim = d.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let ckpt = d.join("input.ckpt");
        std::os::unix::fs::symlink(&victim, temp_name(&ckpt)).unwrap();
        write_atomic(&ckpt, b"1 2 3\n", 0o640, true).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&ckpt).unwrap(), "1 2 3\n");
        let mode = std::fs::metadata(&ckpt).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "{mode:o}");
        assert!(!temp_name(&ckpt).exists());
        // a link at the file's own name is replaced, not followed
        std::fs::remove_file(&ckpt).unwrap();
        std::os::unix::fs::symlink(&victim, &ckpt).unwrap();
        write_atomic(&ckpt, b"4 5 6\n", 0o640, false).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&ckpt)
            .unwrap()
            .file_type()
            .is_symlink());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn reads_refuse_links_devices_fifos_and_big_files_before_reading() {
        let d = dir();
        let f = d.join("f");
        std::fs::write(&f, "12345").unwrap();
        assert_eq!(read_capped(&f, 5).unwrap(), b"12345");
        assert_eq!(read_capped(&f, u64::MAX).unwrap(), b"12345");
        let e = read_capped(&f, 4).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        let l = d.join("l");
        std::os::unix::fs::symlink(&f, &l).unwrap();
        assert_eq!(
            read_capped(&l, 100).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            read_capped(Path::new("/dev/zero"), 100).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let fifo = d.join("fifo");
        nix_mkfifo(&fifo);
        // does not block: refused by its type
        assert_eq!(
            read_capped(&fifo, 100).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn nix_mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }
}
