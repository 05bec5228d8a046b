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
    tracing::info!(input = %ctx.tag, "input ended");
}
