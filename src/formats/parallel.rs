//! Reading one large file on several threads: the file is cut into pieces at record boundaries,
//! the pieces are parsed in parallel and their outcomes are handed over in file order.
//!
//! The calling thread reads the file once, in order: it hashes every byte (SHA-256 and size of
//! the summary), counts lines, and cuts a piece at the first record boundary at or after
//! [`CHUNK_BYTES`]:
//!
//! - XML: at the `<` of a record element's start tag (`<SubscriberChange`, followed by white
//!   space, `>` or `/`).
//! - CSV: after a `\n` outside quotes (an even number of `"` since the start of the piece, which
//!   itself starts outside quotes) that ends a non-blank line, before an ASCII byte (so a piece
//!   never starts with a byte order mark, which the csv crate would strip).
//!
//! `<`, `"` and `\n` are never trail bytes in Shift_JIS (nor continuation bytes in UTF-8), so a
//! cut never falls inside a character. Each piece is parsed by the serial reader's own parser
//! ([`xml_reader::read_piece`], [`csv_reader::read_piece`]), started in the state the serial
//! reader is in at such a boundary (inside the root element / after a row, with the file's
//! offset and line), decoding strictly. The merge step checks what spans pieces: the header in
//! the first piece, RecordSequence increasing from one piece to the next, the trailer's count
//! against the records of all pieces.
//!
//! **Fallback.** A piece parser reports anything it is not sure of: any file-level error, a piece
//! that does not end between two records (a cut inside a comment, CDATA section or quoted field
//! that only looked like a boundary), an event or row too close to a size limit (whether the
//! serial reader rejects those depends on where its read buffers end). The merge step does the
//! same for a cross-piece check that fails. The file is then read again by the serial reader,
//! which skips the outcomes already handed over: diagnostics and outcomes are the serial
//! reader's exactly. A file-level error therefore costs a second read; a record-level error
//! (a rejected record) does not. Without a record boundary within reach of the target (a huge
//! record, CSV with CR-only line ends) the file is read serially too.
//!
//! **Memory.** At most `window` pieces (default twice the threads of the current rayon pool) are
//! read, parsed or waiting to be handed over at any time; memory does not grow with the file.
//! Pieces run on the caller's rayon pool (`--threads`); the outcome does not depend on the number
//! of threads or on the piece size.

use super::piece::{Piece, PieceOut};
use super::{
    FileHeader, FileRejected, FileSummary, Format, ReadOptions, RecordOutcome, TextEncoding, csv_reader, decode,
    sniff_format, xml_reader,
};
use crate::domain::FileKind;
use crate::error::{Diagnostic, ErrorCode};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

/// Files smaller than this are read by the serial reader.
pub const PARALLEL_MIN_BYTES: u64 = 16 * 1024 * 1024;

/// Target size of a piece: a piece ends at the first record boundary at or after it.
pub const CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// Bytes read at a time past the target while looking for a record boundary.
const SCAN_STEP: usize = 256 * 1024;

/// Most bytes read past the target while looking for a record boundary.
const MAX_SCAN: usize = 64 * 1024 * 1024;

/// How [`read_input_with`] reads a file.
#[derive(Clone, Debug)]
pub struct ParallelConfig {
    /// Files smaller than this are read serially.
    pub min_file_bytes: u64,
    /// Target piece size in bytes.
    pub chunk_bytes: usize,
    /// Pieces in flight at once; `None`: twice the threads of the current rayon pool.
    pub window: Option<usize>,
    /// Read in pieces even when the current rayon pool has a single thread.
    pub single_thread: bool,
}

impl Default for ParallelConfig {
    fn default() -> Self {
        ParallelConfig {
            min_file_bytes: PARALLEL_MIN_BYTES,
            chunk_bytes: CHUNK_BYTES,
            window: None,
            single_thread: false,
        }
    }
}

/// How a file was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPath {
    /// By the serial reader (small file, single thread, or not an XML/CSV file).
    Serial,
    /// In pieces, all of them clear.
    Parallel { pieces: u64 },
    /// Started in pieces (`pieces` read so far), then read again serially.
    Fallback { pieces: u64 },
}

/// [`read_input`] with explicit thresholds; also says how the file was read.
pub fn read_input_with(
    path: &Path,
    display: &str,
    opts: &ReadOptions,
    on_record: &mut dyn FnMut(RecordOutcome),
    config: &ParallelConfig,
) -> (Result<FileSummary, FileRejected>, ReadPath) {
    let format = match sniff_file(path, display, opts) {
        Ok(f) => f,
        Err(e) => return (Err(e), ReadPath::Serial),
    };
    let (format, len) = format;
    let threads = rayon::current_num_threads();
    if len < config.min_file_bytes || (threads < 2 && !config.single_thread) {
        return (serial(format, path, display, opts, on_record), ReadPath::Serial);
    }
    let mut delivered = 0u64;
    let mut pieces = 0u64;
    if let Some(summary) = read_pieces(
        format,
        path,
        display,
        opts,
        on_record,
        config,
        &mut delivered,
        &mut pieces,
    ) {
        return (Ok(summary), ReadPath::Parallel { pieces });
    }
    // The outcomes handed over so far are the serial reader's first ones (or, if it rejects the
    // file, moot): skip them.
    let mut skip = delivered;
    let mut rest = |o: RecordOutcome| {
        if skip > 0 {
            skip -= 1;
        } else {
            on_record(o);
        }
    };
    (
        serial(format, path, display, opts, &mut rest),
        ReadPath::Fallback { pieces },
    )
}

fn serial(
    format: Format,
    path: &Path,
    display: &str,
    opts: &ReadOptions,
    on_record: &mut dyn FnMut(RecordOutcome),
) -> Result<FileSummary, FileRejected> {
    match format {
        Format::Xml => xml_reader::read(path, display, opts, on_record),
        Format::Csv => csv_reader::read(path, display, opts, on_record),
    }
}

/// The file-level checks made before reading: the file opens, is within `max_file_bytes` and
/// starts like XML or CSV. Returns the format and the size.
fn sniff_file(path: &Path, display: &str, opts: &ReadOptions) -> Result<(Format, u64), FileRejected> {
    let reject = |code, msg: String| FileRejected {
        diagnostics: vec![Diagnostic::new(display, code, msg)],
        header: None,
    };
    let mut f = std::fs::File::open(path).map_err(|e| reject(ErrorCode::Schema, format!("cannot open file: {e}")))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > opts.limits.max_file_bytes {
        return Err(reject(
            ErrorCode::Schema,
            format!(
                "file is {len} bytes, over the limit of {} bytes",
                opts.limits.max_file_bytes
            ),
        ));
    }
    let mut head = [0u8; 64];
    let n = f
        .read(&mut head)
        .map_err(|e| reject(ErrorCode::Schema, format!("cannot read file: {e}")))?;
    match sniff_format(&head[..n]) {
        Some(format) => Ok((format, len)),
        None => Err(reject(
            ErrorCode::Schema,
            "neither XML (starts with '<') nor CSV (starts with an H row)".into(),
        )),
    }
}

/// A parsed piece on its way back to the calling thread, with its buffer for reuse.
struct Parsed {
    index: u64,
    result: std::thread::Result<Option<PieceOut>>,
    buf: Vec<u8>,
}

/// Reads the file in pieces. `None`: unclear somewhere; `delivered` outcomes were handed over.
fn read_pieces(
    format: Format,
    path: &Path,
    display: &str,
    opts: &ReadOptions,
    on_record: &mut dyn FnMut(RecordOutcome),
    config: &ParallelConfig,
    delivered: &mut u64,
    pieces: &mut u64,
) -> Option<FileSummary> {
    let window = config.window.unwrap_or(2 * rayon::current_num_threads()).max(1);
    let mut src = Source::open(path, config.chunk_bytes, opts.limits.max_record_bytes, window)?;
    let head = src.head()?;
    let (encoding, kind) = match format {
        Format::Xml => (
            xml_reader::declared_encoding(&head[..head.len().min(1024)]).ok()?,
            xml_root_kind(head)?,
        ),
        Format::Csv => (
            csv_reader::declared_encoding(&head[..head.len().min(4096)]).ok()?,
            csv_kind(head)?,
        ),
    };
    let mut cutter = Cutter::new(format, kind);
    let window = window as u64;
    let abort = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Parsed>();
    rayon::in_place_scope_fifo(|scope| {
        let mut merge = Merge::new(kind);
        let mut waiting: BTreeMap<u64, Parsed> = BTreeMap::new();
        let (mut spawned, mut next) = (0u64, 0u64);
        let mut reading = true;
        let run = || loop {
            while reading && spawned - next < window {
                let (piece, buf) = src.next_piece(&mut cutter, kind, encoding)?;
                reading = !piece.last;
                let (tx, abort) = (tx.clone(), &abort);
                let index = spawned;
                scope.spawn_fifo(move |_| {
                    let result = if abort.load(Ordering::Relaxed) {
                        Ok(None)
                    } else {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match format {
                            Format::Xml => xml_reader::read_piece(&buf, &piece, display, opts),
                            Format::Csv => csv_reader::read_piece(&buf, &piece, display, opts),
                        }))
                    };
                    // the receiver outlives the scope
                    let _ = tx.send(Parsed { index, result, buf });
                });
                spawned += 1;
                *pieces = spawned;
            }
            if next == spawned {
                return merge.finish(&mut src);
            }
            let parsed = wait_for(next, &rx, &mut waiting);
            src.recycle(parsed.buf);
            let out = match parsed.result {
                Ok(out) => out?,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            merge.take(next == 0, !reading && next + 1 == spawned, out, on_record, delivered)?;
            next += 1;
        };
        let result = run();
        if result.is_none() {
            abort.store(true, Ordering::Relaxed); // pieces not started yet need not be parsed
        }
        result
    })
}

/// Waits for piece `index`, lending this thread to the pool meanwhile if it is one of its
/// workers (a worker blocked on the channel could hold up the very pieces it waits for).
fn wait_for(index: u64, rx: &mpsc::Receiver<Parsed>, waiting: &mut BTreeMap<u64, Parsed>) -> Parsed {
    loop {
        if let Some(p) = waiting.remove(&index) {
            return p;
        }
        let got = match rx.try_recv() {
            Ok(p) => Some(p),
            Err(_) => match rayon::yield_now() {
                Some(rayon::Yield::Executed) => None,
                // every piece is taken by some thread: wait for one to finish
                Some(rayon::Yield::Idle) => rx.recv_timeout(std::time::Duration::from_millis(1)).ok(),
                // not a pool thread: the pool does the work
                None => rx.recv().ok(),
            },
        };
        if let Some(p) = got {
            waiting.insert(p.index, p);
        }
    }
}

/// The checks that span pieces, and handing the outcomes over in order.
struct Merge {
    kind: FileKind,
    header: Option<FileHeader>,
    records: u64,
    rejected: u64,
    last_seq: u64,
    trailer: Option<u64>,
}

impl Merge {
    fn new(kind: FileKind) -> Self {
        Merge {
            kind,
            header: None,
            records: 0,
            rejected: 0,
            last_seq: 0,
            trailer: None,
        }
    }

    fn take(
        &mut self,
        first: bool,
        last: bool,
        out: PieceOut,
        on_record: &mut dyn FnMut(RecordOutcome),
        delivered: &mut u64,
    ) -> Option<()> {
        if first {
            // the later pieces were parsed as records of the kind the file's start announced
            let header = out.header.filter(|h| h.kind == self.kind)?;
            self.header = Some(header);
        }
        if let Some(seq) = out.first_seq {
            if seq <= self.last_seq {
                return None; // RecordSequence does not increase across pieces
            }
            self.last_seq = out.last_seq;
        }
        self.records += out.records;
        self.rejected += out.rejected;
        if last {
            self.trailer = out.trailer;
        }
        for o in out.outcomes {
            *delivered += 1;
            on_record(o);
        }
        Some(())
    }

    fn finish(self, src: &mut Source) -> Option<FileSummary> {
        if self.trailer != Some(self.records) {
            return None; // the serial reader names the mismatch
        }
        Some(FileSummary {
            header: self.header?,
            records: self.records,
            rejected: self.rejected,
            sha256: std::mem::take(&mut src.hasher).finalize().into(),
            bytes: src.bytes,
        })
    }
}

/// The file, read once in order by the calling thread.
struct Source {
    file: std::fs::File,
    hasher: Sha256,
    /// Bytes read (and hashed) so far.
    bytes: u64,
    eof: bool,
    /// Bytes read but not yet in a piece; they start at `offset`, on line `line`.
    carry: Vec<u8>,
    offset: u64,
    line: u64,
    /// Buffers of parsed pieces, for reuse (at most `window`).
    free: Vec<Vec<u8>>,
    window: usize,
    chunk: usize,
    /// How far past `chunk` a piece may grow looking for a boundary.
    max_scan: usize,
}

impl Source {
    fn open(path: &Path, chunk: usize, max_record_bytes: usize, window: usize) -> Option<Source> {
        Some(Source {
            file: std::fs::File::open(path).ok()?,
            hasher: Sha256::new(),
            bytes: 0,
            eof: false,
            carry: Vec::new(),
            offset: 0,
            line: 1,
            free: Vec::new(),
            window,
            chunk: chunk.max(1),
            max_scan: max_record_bytes
                .saturating_mul(4)
                .saturating_add(SCAN_STEP)
                .min(MAX_SCAN),
        })
    }

    /// The first bytes of the file (up to 64 KiB), read ahead into the first piece.
    fn head(&mut self) -> Option<&[u8]> {
        let mut carry = std::mem::take(&mut self.carry);
        self.fill(&mut carry, 64 * 1024)?;
        self.carry = carry;
        Some(&self.carry)
    }

    /// Reads until `buf` holds `want` bytes or the file ends.
    fn fill(&mut self, buf: &mut Vec<u8>, want: usize) -> Option<()> {
        while buf.len() < want && !self.eof {
            let at = buf.len();
            buf.resize(want, 0);
            let n = loop {
                match self.file.read(&mut buf[at..]) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            let n = match n {
                Ok(n) => n,
                Err(_) => {
                    buf.truncate(at);
                    return None; // the serial reader reports it
                }
            };
            buf.truncate(at + n);
            self.hasher.update(&buf[at..]);
            self.bytes += n as u64;
            self.eof = n == 0;
        }
        Some(())
    }

    fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.free.len() < self.window {
            buf.clear();
            self.free.push(buf);
        }
    }

    /// The next piece: from the end of the previous one to the first record boundary at or
    /// after the target size, or to the end of the file. `None`: no boundary within reach.
    fn next_piece(&mut self, cutter: &mut Cutter, kind: FileKind, encoding: TextEncoding) -> Option<(Piece, Vec<u8>)> {
        let mut buf = self.free.pop().unwrap_or_default();
        buf.extend_from_slice(&self.carry);
        self.carry.clear();
        cutter.reset();
        let target = self.chunk;
        let mut want = target.saturating_add(SCAN_STEP);
        let last = loop {
            self.fill(&mut buf, want)?;
            if let Some(b) = cutter.find(&buf, target) {
                self.carry.extend_from_slice(&buf[b..]);
                buf.truncate(b);
                break false;
            }
            if self.eof {
                break true;
            }
            if buf.len() >= target.saturating_add(self.max_scan) {
                return None;
            }
            want = buf.len() + SCAN_STEP;
        };
        let piece = Piece {
            offset: self.offset,
            line: self.line,
            last,
            kind,
            encoding,
        };
        self.offset += buf.len() as u64;
        self.line += decode::count_nl(&buf);
        Some((piece, buf))
    }
}

/// Finds record boundaries in the bytes of a piece, resuming where it left off when the piece
/// has grown.
struct Cutter {
    format: Format,
    /// `<` + record element name (XML).
    tag: Vec<u8>,
    /// Where to look on.
    pos: usize,
    /// Quotes before `pos` are odd (CSV); `None`: not counted yet.
    odd: Option<bool>,
}

impl Cutter {
    fn new(format: Format, kind: FileKind) -> Cutter {
        Cutter {
            format,
            tag: format!("<{}", kind.name()).into_bytes(),
            pos: 0,
            odd: None,
        }
    }

    fn reset(&mut self) {
        self.pos = 0;
        self.odd = None;
    }

    /// A boundary at or after `target` (at least 1), strictly inside `buf`.
    fn find(&mut self, buf: &[u8], target: usize) -> Option<usize> {
        let target = target.max(1);
        if buf.len() <= target {
            return None;
        }
        match self.format {
            Format::Xml => self.find_xml(buf, target),
            Format::Csv => self.find_csv(buf, target),
        }
    }

    fn find_xml(&mut self, buf: &[u8], target: usize) -> Option<usize> {
        let mut i = self.pos.max(target);
        let finder = memchr::memmem::Finder::new(&self.tag);
        while let Some(j) = finder.find(&buf[i..]) {
            let at = i + j;
            match buf.get(at + self.tag.len()) {
                None => {
                    self.pos = at; // look again once more is read
                    return None;
                }
                Some(b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/') => return Some(at),
                Some(_) => i = at + 1,
            }
        }
        // a tag may start in the last bytes
        self.pos = buf.len().saturating_sub(self.tag.len()).max(i);
        None
    }

    fn find_csv(&mut self, buf: &[u8], target: usize) -> Option<usize> {
        let mut odd = match self.odd {
            Some(o) => o,
            None => {
                self.pos = target;
                buf[..target].iter().filter(|&&b| b == b'"').count() % 2 == 1
            }
        };
        let mut i = self.pos;
        let found = loop {
            let Some(j) = memchr::memchr2(b'"', b'\n', &buf[i..]) else {
                i = buf.len();
                break None;
            };
            let at = i + j;
            if buf[at] == b'"' {
                odd = !odd;
                i = at + 1;
                continue;
            }
            if !odd {
                let Some(&next) = buf.get(at + 1) else {
                    i = at; // look at this newline again once more is read
                    break None;
                };
                if ends_row(buf, at) && next.is_ascii() {
                    break Some(at + 1);
                }
            }
            i = at + 1;
        };
        self.pos = i;
        self.odd = Some(odd);
        found
    }
}

/// The `\n` at `at` ends a non-blank line (`…x\n` or `…x\r\n`), so blank lines before a row
/// stay in the row's piece as they stay in its span for the serial reader.
fn ends_row(buf: &[u8], at: usize) -> bool {
    let end = if at > 0 && buf[at - 1] == b'\r' { at - 1 } else { at };
    end > 0 && !matches!(buf[end - 1], b'\n' | b'\r')
}

/// The kind named by the root element: the first element after the prolog (XML declaration,
/// comments, processing instructions, white space). `None` when it is not plain.
fn xml_root_kind(head: &[u8]) -> Option<FileKind> {
    let mut b = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    loop {
        b = b.trim_ascii_start();
        if b.starts_with(b"<?") {
            let end = memchr::memmem::find(b, b"?>")?;
            b = &b[end + 2..];
        } else if b.starts_with(b"<!--") {
            let end = memchr::memmem::find(&b[4..], b"-->")?;
            b = &b[4 + end + 3..];
        } else if b.first() == Some(&b'<') {
            let name = &b[1..];
            let end = name
                .iter()
                .position(|&c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/'))?;
            let kind = FileKind::from_root(std::str::from_utf8(&name[..end]).ok()?)?;
            return kind.is_input().then_some(kind);
        } else {
            return None;
        }
    }
}

/// The kind named by the CSV H row (its second column), when the first line says it plainly.
fn csv_kind(head: &[u8]) -> Option<FileKind> {
    let b = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let line = &b[..memchr::memchr(b'\n', b)?];
    let mut cols = line.split(|&c| c == b',');
    let kind = match (cols.next()?, cols.next()?) {
        (b"H" | b"\"H\"", k) => FileKind::from_name(std::str::from_utf8(k).ok()?.trim_matches('"'))?,
        _ => return None,
    };
    kind.is_input().then_some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_kind_after_the_prolog() {
        let k = |s: &[u8]| xml_root_kind(s);
        assert_eq!(
            k(b"\xEF\xBB\xBF<?xml version=\"1.0\"?>\n<!-- c --><?pi x?>\r\n <FlagChangeFile xmlns=\"x\">"),
            Some(FileKind::FlagChange)
        );
        assert_eq!(k(b"<FukuhonFile>"), Some(FileKind::Fukuhon));
        assert_eq!(k(b"<SubscriberLinkageFile>"), None, "output kinds are not input");
        assert_eq!(k(b"<!DOCTYPE x><FukuhonFile>"), None);
        assert_eq!(k(b"<!-- unclosed <FukuhonFile>"), None);
        assert_eq!(k(b"<FukuhonFile"), None, "name cut off");
        assert_eq!(
            csv_kind(b"H,AgeTransitionHandoff,1,x\r\n"),
            Some(FileKind::AgeTransitionHandoff)
        );
        assert_eq!(csv_kind(b"\"H\",\"Fukuhon\",1\n"), Some(FileKind::Fukuhon));
        assert_eq!(csv_kind(b"H,SubscriberLinkage,1\n"), None);
        assert_eq!(csv_kind(b"H,Fukuhon,1"), None, "no whole first line");
    }

    #[test]
    fn cuts() {
        let mut c = Cutter::new(Format::Csv, FileKind::Fukuhon);
        // not inside quotes, not after a blank line, not before a non-ASCII byte
        let b = b"H,x\r\nD,\"a\nb\"\r\n\r\nD,2\n\xEF\xBB\xBFD\nT,1\n";
        let cuts: Vec<usize> = (1..b.len())
            .filter_map(|t| {
                c.reset();
                c.find(b, t)
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(cuts, [5, 14, 25]);
        assert!(ends_row(b"x\r\n", 2) && ends_row(b"x\n", 1));
        assert!(!ends_row(b"\n\r\n", 2) && !ends_row(b"\n", 0));
        // a piece that grows: the scan resumes with the quote count so far
        c.reset();
        assert_eq!(c.find(b"H,\"x\ny", 1), None);
        assert_eq!(c.find(b"H,\"x\ny\"\nD", 1), Some(8));
        let mut c = Cutter::new(Format::Xml, FileKind::Fukuhon);
        let b = b"<FukuhonFile><Fukuhon><FukuhonX/><Fukuhon/><Fukuhon\n";
        assert_eq!(c.find(b, 1), Some(13));
        c.reset();
        assert_eq!(c.find(b, 14), Some(33));
        c.reset();
        assert_eq!(c.find(b, 35), Some(43));
        c.reset();
        assert_eq!(
            c.find(&b[..b.len() - 1], 35),
            None,
            "the byte after the name is not read yet"
        );
    }
}
