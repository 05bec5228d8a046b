//! Newline framing shared by every line-oriented source (file, zfile, tail, unix stream).
//!
//! A [`LineFramer`] is fed byte chunks exactly as they come off a read (split or merged in any
//! way) and reports whole lines. Lines longer than the configured maximum are skipped whole
//! (including the part that arrives after the limit was crossed) and reported as
//! [`Frame::Oversized`], blank lines as [`Frame::Empty`]; neither ever reaches a script.

/// What the framer found in the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// One complete line, without its `\n` (and without a trailing `\r`).
    Line(&'a [u8]),
    /// A line holding only white space.
    Empty,
    /// A line longer than the maximum; the number is its length in bytes.
    Oversized(usize),
}

/// Capacity a framer keeps for its partial line between lines.
const KEEP: usize = 1 << 20;

/// Splits a byte stream into lines. See the module documentation.
#[derive(Debug)]
pub struct LineFramer {
    partial: Vec<u8>,
    max: usize,
    /// Bytes of the current line already thrown away because it crossed `max`.
    discarding: Option<usize>,
    /// The line being skipped was abandoned ([`LineFramer::abandon`]): no frame for it.
    silent: bool,
}

impl LineFramer {
    /// A framer that accepts lines of at most `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self {
            partial: Vec::new(),
            max: max_line.max(1),
            discarding: None,
            silent: false,
        }
    }

    /// Bytes held for a line that has not ended yet.
    pub fn pending(&self) -> usize {
        self.partial.len() + self.discarding.unwrap_or(0)
    }

    /// Feed one chunk; `out` is called for every line that it completes.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut impl FnMut(Frame<'_>)) {
        while !chunk.is_empty() {
            match memchr::memchr(b'\n', chunk) {
                Some(pos) => {
                    let (head, rest) = (&chunk[..pos], &chunk[pos + 1..]);
                    chunk = rest;
                    if let Some(dropped) = self.discarding.take() {
                        if !std::mem::take(&mut self.silent) {
                            out(Frame::Oversized(dropped + head.len()));
                        }
                    } else if self.partial.is_empty() {
                        self.emit(head, out);
                    } else if self.partial.len() + head.len() > self.max {
                        let n = self.partial.len() + head.len();
                        self.partial.clear();
                        out(Frame::Oversized(n));
                    } else {
                        let mut line = std::mem::take(&mut self.partial);
                        line.extend_from_slice(head);
                        self.emit(&line, out);
                        line.clear();
                        // keep the allocation for the next line that crosses a read, but not
                        // the buffer of a long one
                        line.shrink_to(KEEP);
                        self.partial = line;
                    }
                }
                None => {
                    if let Some(dropped) = self.discarding.as_mut() {
                        *dropped += chunk.len();
                    } else if self.partial.len() + chunk.len() > self.max {
                        self.discarding = Some(self.partial.len() + chunk.len());
                        self.partial.clear();
                        self.partial.shrink_to(64 * 1024);
                    } else {
                        self.partial.extend_from_slice(chunk);
                    }
                    return;
                }
            }
        }
    }

    /// The input ended: a last line without `\n` is still a line.
    pub fn finish(&mut self, out: &mut impl FnMut(Frame<'_>)) {
        if let Some(dropped) = self.discarding.take() {
            if !std::mem::take(&mut self.silent) {
                out(Frame::Oversized(dropped));
            }
        } else if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.emit(&line, out);
        }
    }

    /// Forget a partial line (the file under it was truncated or replaced).
    pub fn reset(&mut self) {
        self.partial.clear();
        self.discarding = None;
        self.silent = false;
    }

    /// Bytes of memory the partial line holds (what [`LineFramer::pending`] counts, less
    /// what is being skipped without being kept).
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Drop the partial line (a budget shared with other streams is full): what is held is
    /// freed and the rest of the line, up to its newline, is skipped without a frame (the
    /// caller counts the drop). Returns the bytes dropped (0: there was no partial line).
    pub fn abandon(&mut self) -> usize {
        let n = self.partial.len();
        if n == 0 {
            return 0;
        }
        self.partial.clear();
        self.partial.shrink_to(64 * 1024);
        self.discarding = Some(n);
        self.silent = true;
        n
    }

    fn emit(&self, mut line: &[u8], out: &mut impl FnMut(Frame<'_>)) {
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.len() > self.max {
            out(Frame::Oversized(line.len()));
        } else if line.iter().all(|b| b.is_ascii_whitespace()) {
            out(Frame::Empty);
        } else {
            out(Frame::Line(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, Clone)]
    enum Owned {
        Line(Vec<u8>),
        Empty,
        Oversized(usize),
    }

    fn frame_all(chunks: &[&[u8]], max: usize) -> Vec<Owned> {
        let mut f = LineFramer::new(max);
        let mut v = Vec::new();
        let mut out = |fr: Frame<'_>| {
            v.push(match fr {
                Frame::Line(l) => Owned::Line(l.to_vec()),
                Frame::Empty => Owned::Empty,
                Frame::Oversized(n) => Owned::Oversized(n),
            })
        };
        for c in chunks {
            f.push(c, &mut out);
        }
        f.finish(&mut out);
        v
    }

    #[test]
    fn splits_lines_and_keeps_unterminated_last_line() {
        let got = frame_all(&[b"a\nbb\r\n\n  \nccc"], 100);
        assert_eq!(
            got,
            vec![
                Owned::Line(b"a".to_vec()),
                Owned::Line(b"bb".to_vec()),
                Owned::Empty,
                Owned::Empty,
                Owned::Line(b"ccc".to_vec())
            ]
        );
    }

    #[test]
    fn oversized_line_is_skipped_whole_and_the_next_survives() {
        let big = vec![b'x'; 50];
        let got = frame_all(&[&big[..20], &big[20..], b"\nok\n"], 10);
        assert_eq!(got, vec![Owned::Oversized(50), Owned::Line(b"ok".to_vec())]);
        let got = frame_all(&[&big, b"\n", b"ok"], 10);
        assert_eq!(got, vec![Owned::Oversized(50), Owned::Line(b"ok".to_vec())]);
    }

    proptest! {
        /// However the stream is cut into chunks, the framer sees the same lines.
        #[test]
        fn chunking_does_not_change_the_frames(
            lines in proptest::collection::vec("[a-z{}\":, ]{0,40}", 0..20),
            cuts in proptest::collection::vec(0usize..1000, 0..10),
            max in 5usize..50,
        ) {
            let text = lines.join("\n");
            let bytes = text.as_bytes();
            let whole = frame_all(&[bytes], max);
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            points.sort();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for p in points { chunks.push(&bytes[prev..p]); prev = p; }
            chunks.push(&bytes[prev..]);
            prop_assert_eq!(frame_all(&chunks, max), whole.clone());
            // and every line comes back exactly, classified by the rules
            let mut lines = lines;
            if lines.last().is_some_and(|l| l.is_empty()) { lines.pop(); }
            let expect: Vec<Owned> = {
                lines.iter().map(|l| if l.len() > max { Owned::Oversized(l.len()) }
                    else if l.trim().is_empty() { Owned::Empty } else { Owned::Line(l.as_bytes().to_vec()) }).collect()
            };
            prop_assert_eq!(whole, expect);
        }
    }
}
