//! `file://` and `zfile://`: read a file (gzip: every member) once, line by line, then end.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::{feed, finish, io_error, Collector, SourceCtx};
use crate::LineFramer;

const CHUNK: usize = 256 * 1024;

pub(crate) fn open(path: &Path, gzip: bool) -> io::Result<Box<dyn Read + Send>> {
    let f = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(CHUNK, f),
        ))
    } else {
        Box::new(f)
    })
}

pub(crate) fn run(mut reader: Box<dyn Read + Send>, mut ctx: SourceCtx) {
    let mut framer = LineFramer::new(ctx.max_line);
    let mut col = Collector::new(&ctx);
    let mut buf = vec![0u8; CHUNK];
    ctx.ready("reading");
    loop {
        if ctx.stopping() || col.closed() {
            break;
        }
        match reader.read(&mut buf) {
            Ok(0) => {
                finish(&mut framer, &mut col, &mut ctx);
                break;
            }
            Ok(n) => feed(&mut framer, &mut col, &mut ctx, &buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                io_error(&ctx, "read failed, input ends", &e);
                finish(&mut framer, &mut col, &mut ctx);
                break;
            }
        }
    }
    col.flush(&mut ctx);
    ctx.ready("ended");
    tracing::info!(input = %ctx.tag, "input ended");
}

/// `file://PATH`: read once, then the input ends.
pub const FILE: super::SourceScheme = super::SourceScheme {
    name: "file",
    form: "file://PATH",
    finite: true,
    options: &[],
    query: &[],
    parse: |_, rest, _| {
        Ok(Box::new(FileInput {
            path: crate::uri::path(rest),
            gzip: false,
        }))
    },
};

/// `zfile://PATH`: a gzip file (every member), read once.
pub const ZFILE: super::SourceScheme = super::SourceScheme {
    name: "zfile",
    form: "zfile://PATH",
    finite: true,
    options: &[],
    query: &[],
    parse: |_, rest, _| {
        Ok(Box::new(FileInput {
            path: crate::uri::path(rest),
            gzip: true,
        }))
    },
};

#[derive(Debug)]
struct FileInput {
    path: std::path::PathBuf,
    gzip: bool,
}

impl super::Source for FileInput {
    fn scheme(&self) -> &'static super::SourceScheme {
        if self.gzip {
            &ZFILE
        } else {
            &FILE
        }
    }
    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }
    fn prepare(&self, _max_line: usize) -> io::Result<Box<dyn super::Prepared>> {
        Ok(Box::new(Opened(open(&self.path, self.gzip)?)))
    }
    fn check(&self, found: &mut crate::preflight::Findings, what: &str) {
        if let Err(e) = std::fs::File::open(&self.path) {
            found.problem(format!("{what}: {}: {e}", self.path.display()));
        }
    }
}

struct Opened(Box<dyn Read + Send>);

impl super::Prepared for Opened {
    fn run(self: Box<Self>, ctx: SourceCtx) {
        run(self.0, ctx)
    }
}
