//! Strict decoding of input files (UTF-8 or Shift_JIS = CP932), streaming.
//!
//! [`StrictDecoder`] reads a byte stream in fixed-size chunks, validates it with encoding_rs's
//! no-replacement decoder and either hands out UTF-8 (XML: parse the transcoded text, so a
//! Shift_JIS trail byte such as 0x5D can never be mistaken for `]`) or the validated raw bytes
//! (CSV: `,` `"` CR LF never occur inside a Shift_JIS character, so rows can be split on raw bytes
//! and each field decoded afterwards with [`decode_field`]). Every raw byte goes into a SHA-256 so
//! a summary's digest and size cover the file as stored, and an invalid byte sequence is reported
//! with its raw byte offset and line. Memory stays bounded by the chunk size.

use super::TextEncoding;
use encoding_rs::{Decoder, DecoderResult};
use sha2::{Digest, Sha256};
use std::io::{self, BufRead, Read};

/// Raw bytes read from the inner reader at a time.
pub const CHUNK: usize = 64 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where and why the byte stream is not valid in its declared encoding (`E_ENCODING`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// 0-based offset of the first offending byte in the file as stored.
    pub offset: u64,
    /// 1-based line of that byte.
    pub line: u64,
    pub message: String,
}

/// Why [`StrictDecoder`] stopped with an `io::Error`: lets callers map it to a spec code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    Encoding(DecodeError),
    /// More than the configured number of bytes were consumed since the last [`StrictDecoder::mark`].
    SizeLimit,
}

/// What [`StrictDecoder`] hands to its consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The text transcoded to UTF-8.
    Utf8,
    /// The raw bytes, each chunk handed out only once validated (BOM removed).
    Validated,
}

/// Strict transcoding/validating reader. See the module docs.
pub struct StrictDecoder<R> {
    inner: R,
    encoding: TextEncoding,
    decoder: Decoder,
    output: Output,
    /// Raw bytes; `raw[..done]` is validated, `raw[done..raw_len]` waits for more input.
    raw: Vec<u8>,
    raw_len: usize,
    done: usize,
    /// Absolute offset of `raw[0]` in the file.
    base: u64,
    /// Newlines in the raw bytes before `raw[done]`.
    raw_lines: u64,
    /// UTF-8 output (Output::Utf8) or scratch for validation (Output::Validated).
    out: Vec<u8>,
    out_len: usize,
    /// Consumer position in `out` (Utf8) or `raw` (Validated).
    pos: usize,
    /// `None` when the caller hashes the file itself ([`Self::without_digest`]).
    hasher: Option<Sha256>,
    total: u64,
    eof: bool,
    started: bool,
    finished: bool,
    /// The decoder has been called with `last = true`.
    flushed: bool,
    stop: Option<StopReason>,
    // consumer side
    count_lines: bool,
    lines: u64,
    consumed: u64,
    mark: u64,
    limit: u64,
}

impl<R: Read> StrictDecoder<R> {
    pub fn new(inner: R, encoding: TextEncoding, output: Output) -> Self {
        Self::with_chunk(inner, encoding, output, CHUNK)
    }

    /// With a given raw chunk size (tests use tiny chunks to split characters across reads).
    pub fn with_chunk(inner: R, encoding: TextEncoding, output: Output, chunk: usize) -> Self {
        let chunk = chunk.max(4);
        let decoder = encoding.encoding_rs().new_decoder_without_bom_handling();
        // Shift_JIS → UTF-8 grows at most 3 bytes per input byte (a half-width kana: 1 → 3).
        let out_cap = 3 * chunk + 16;
        StrictDecoder {
            inner,
            encoding,
            decoder,
            output,
            raw: vec![0; chunk],
            raw_len: 0,
            done: 0,
            base: 0,
            raw_lines: 0,
            out: vec![0; out_cap],
            out_len: 0,
            pos: 0,
            hasher: Some(Sha256::new()),
            total: 0,
            eof: false,
            started: false,
            finished: false,
            flushed: false,
            stop: None,
            count_lines: true,
            lines: 1,
            consumed: 0,
            mark: 0,
            limit: u64::MAX,
        }
    }

    /// A decoder for a piece of a file that starts at byte `offset` on line `line` (both of the file
    /// as stored), right after a character boundary: no byte order mark is looked for, and
    /// positions in errors and [`Self::line`] are those of the whole file. The piece ends where
    /// `inner` ends: a character cut there is an encoding error, as at the end of a file.
    pub fn resume(inner: R, encoding: TextEncoding, output: Output, offset: u64, line: u64) -> Self {
        let mut d = Self::new(inner, encoding, output);
        d.started = true;
        d.base = offset;
        d.raw_lines = line.saturating_sub(1);
        d.lines = line.max(1);
        d
    }

    /// Skips the SHA-256 (a caller reading a file in pieces hashes it in order itself);
    /// [`Self::finish_digest`] then returns the digest of nothing.
    pub fn without_digest(mut self) -> Self {
        self.hasher = None;
        self
    }

    /// Whether to count newlines in consumed output (for [`Self::line`]); on by default.
    pub fn count_lines(&mut self, on: bool) {
        self.count_lines = on;
    }

    /// Fails reads once more than `limit` bytes are consumed after the last [`Self::mark`]; this
    /// bounds what a consumer (quick-xml, csv) buffers for a single event or row.
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Starts a new span for the size limit.
    pub fn mark(&mut self) {
        self.mark = self.consumed;
    }

    /// 1-based line of the next byte to be consumed (counted on the output).
    pub fn line(&self) -> u64 {
        self.lines
    }

    /// Output bytes consumed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Why the last read failed, if it was this decoder's doing.
    pub fn stop_reason(&self) -> Option<&StopReason> {
        self.stop.as_ref()
    }

    /// Raw bytes read so far.
    pub fn raw_bytes(&self) -> u64 {
        self.total
    }

    pub fn encoding(&self) -> TextEncoding {
        self.encoding
    }

    /// Reads the rest of the input (hashing it, not validating it) and returns (SHA-256, size).
    pub fn finish_digest(mut self) -> io::Result<([u8; 32], u64)> {
        if !self.eof {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = read_retry(&mut self.inner, &mut buf)?;
                if n == 0 {
                    break;
                }
                if let Some(h) = &mut self.hasher {
                    h.update(&buf[..n]);
                }
                self.total += n as u64;
            }
        }
        let digest = self.hasher.unwrap_or_default().finalize().into();
        Ok((digest, self.total))
    }

    fn available(&self) -> usize {
        match self.output {
            Output::Utf8 => self.out_len - self.pos,
            Output::Validated => self.done - self.pos,
        }
    }

    fn fail(&mut self, reason: StopReason) -> io::Error {
        let msg = match &reason {
            StopReason::Encoding(e) => format!("E_ENCODING at byte {}: {}", e.offset, e.message),
            StopReason::SizeLimit => "size limit exceeded".to_owned(),
        };
        self.stop = Some(reason);
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }

    fn stopped(&self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, "input rejected earlier")
    }

    /// Produces more output, or sets `finished`.
    fn refill(&mut self) -> io::Result<()> {
        // Drop what the consumer has taken and keep the unvalidated tail.
        let keep_from = self.done;
        if keep_from > 0 {
            self.raw.copy_within(keep_from..self.raw_len, 0);
            self.raw_len -= keep_from;
            self.base += keep_from as u64;
            self.done = 0;
        }
        self.pos = 0;
        self.out_len = 0;
        // Read at least once, and until there is something to decide on (a BOM needs 3 bytes).
        let mut first = true;
        while !self.eof
            && self.raw_len < self.raw.len()
            && (first || self.raw_len == 0 || (!self.started && self.raw_len < BOM.len()))
        {
            first = false;
            let n = read_retry(&mut self.inner, &mut self.raw[self.raw_len..])?;
            if n == 0 {
                self.eof = true;
            } else {
                if let Some(h) = &mut self.hasher {
                    h.update(&self.raw[self.raw_len..self.raw_len + n]);
                }
                self.total += n as u64;
                self.raw_len += n;
            }
        }
        if !self.started {
            self.started = true;
            if self.raw[..self.raw_len].starts_with(BOM) {
                if self.encoding == TextEncoding::ShiftJis {
                    return Err(self.fail(StopReason::Encoding(DecodeError {
                        offset: 0,
                        line: 1,
                        message: "file starts with a UTF-8 byte order mark but declares Shift_JIS".into(),
                    })));
                }
                self.done = BOM.len();
                if self.output == Output::Validated {
                    self.pos = BOM.len();
                }
            }
        }
        if self.done == self.raw_len && (!self.eof || self.flushed) {
            self.finished = self.eof;
            return Ok(()); // nothing to decode yet; the next refill reads on
        }
        let start = self.done;
        // Decode up to the last byte that is a whole character in both encodings (< 0x40 is
        // never a lead or trail byte in Shift_JIS, never a continuation in UTF-8), so no
        // character is pending in the decoder between chunks and validated raw bytes are final.
        // Only a chunk without any such byte is decoded whole (the decoder then keeps the state).
        let boundary = self.raw[start..self.raw_len].iter().rposition(|&b| b < 0x40);
        let end = match boundary {
            _ if self.eof => self.raw_len,
            Some(i) => start + i + 1,
            None if self.raw_len < self.raw.len() => return Ok(()), // read more first
            None => self.raw_len,
        };
        let last = self.eof && end == self.raw_len;
        self.flushed |= last;
        let mut src = start;
        let mut written_total = 0usize;
        loop {
            let (res, read, written) = self.decoder.decode_to_utf8_without_replacement(
                &self.raw[src..end],
                &mut self.out[written_total..],
                last,
            );
            src += read;
            written_total += written;
            match res {
                DecoderResult::InputEmpty => break,
                DecoderResult::OutputFull => {
                    if self.output == Output::Validated {
                        written_total = 0; // scratch: the text itself is not needed
                    } else {
                        unreachable!("output buffer holds a whole chunk");
                    }
                }
                DecoderResult::Malformed(bad, extra) => {
                    // The bad sequence ends `extra` bytes before where the decoder stopped and may
                    // have begun in an earlier chunk.
                    let bad_end = self.base + src as u64 - u64::from(extra);
                    let offset = bad_end.saturating_sub(u64::from(bad));
                    let rel = offset.saturating_sub(self.base) as usize;
                    let nl_from = start.min(rel);
                    let line = self.raw_lines + count_nl(&self.raw[nl_from..rel.max(nl_from)]) + 1;
                    let message = match self.encoding {
                        TextEncoding::Utf8 => "byte sequence is not valid UTF-8",
                        TextEncoding::ShiftJis => "byte sequence is not valid Shift_JIS (CP932)",
                    };
                    return Err(self.fail(StopReason::Encoding(DecodeError {
                        offset,
                        line,
                        message: message.into(),
                    })));
                }
            }
        }
        self.raw_lines += count_nl(&self.raw[start..end]);
        self.done = end;
        if self.output == Output::Utf8 {
            self.out_len = written_total;
            self.pos = 0;
        }
        if self.flushed && self.available() == 0 {
            self.finished = true;
        }
        Ok(())
    }
}

impl<R: Read> BufRead for StrictDecoder<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.stop.is_some() {
            return Err(self.stopped());
        }
        if self.consumed - self.mark > self.limit {
            return Err(self.fail(StopReason::SizeLimit));
        }
        while self.available() == 0 && !self.finished {
            self.refill()?;
        }
        Ok(match self.output {
            Output::Utf8 => &self.out[self.pos..self.out_len],
            Output::Validated => &self.raw[self.pos..self.done],
        })
    }

    fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.available());
        if self.count_lines {
            let s = match self.output {
                Output::Utf8 => &self.out[self.pos..self.pos + amt],
                Output::Validated => &self.raw[self.pos..self.pos + amt],
            };
            self.lines += count_nl(s);
        }
        self.pos += amt;
        self.consumed += amt as u64;
    }
}

impl<R: Read> Read for StrictDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

fn read_retry<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Number of `\n` bytes (the compiler vectorizes this loop).
pub fn count_nl(s: &[u8]) -> u64 {
    s.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Decodes one field strictly, appending to `out`. `Err` holds the offset of the first invalid
/// byte within `bytes`.
pub fn decode_field(bytes: &[u8], encoding: TextEncoding, out: &mut String) -> Result<(), usize> {
    if bytes.is_ascii() {
        // ASCII is the same in both encodings.
        out.push_str(std::str::from_utf8(bytes).expect("ascii"));
        return Ok(());
    }
    match encoding {
        TextEncoding::Utf8 => match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                Ok(())
            }
            Err(e) => Err(e.valid_up_to()),
        },
        TextEncoding::ShiftJis => {
            let mut decoder = encoding_rs::SHIFT_JIS.new_decoder_without_bom_handling();
            let need = decoder
                .max_utf8_buffer_length_without_replacement(bytes.len())
                .expect("field length fits usize");
            out.reserve(need);
            let (res, read) = decoder.decode_to_string_without_replacement(bytes, out, true);
            match res {
                DecoderResult::InputEmpty => Ok(()),
                DecoderResult::Malformed(bad, extra) => Err(read.saturating_sub(usize::from(extra) + usize::from(bad))),
                DecoderResult::OutputFull => unreachable!("reserved the maximum"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sjis(s: &str) -> Vec<u8> {
        let (b, _, unmappable) = encoding_rs::SHIFT_JIS.encode(s);
        assert!(!unmappable);
        b.into_owned()
    }

    fn read_all<R: Read>(d: &mut StrictDecoder<R>) -> Result<Vec<u8>, StopReason> {
        let mut v = Vec::new();
        match d.read_to_end(&mut v) {
            Ok(_) => Ok(v),
            Err(_) => Err(d.stop_reason().cloned().expect("stop reason")),
        }
    }

    /// Hands out one byte per read call, the worst case for chunk boundaries.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    const TEXT: &str = "山田　太郎\nﾔﾏﾀﾞ ﾀﾛｳ,ソン﨑髙①\r\n‐ー]]>end";

    #[test]
    fn multibyte_characters_split_across_reads() {
        for enc in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
            let bytes = match enc {
                TextEncoding::Utf8 => TEXT.as_bytes().to_vec(),
                TextEncoding::ShiftJis => sjis(TEXT),
            };
            for chunk in [4, 5, 7, 64] {
                let mut d = StrictDecoder::with_chunk(&bytes[..], enc, Output::Utf8, chunk);
                assert_eq!(read_all(&mut d).unwrap(), TEXT.as_bytes(), "{enc:?} chunk {chunk}");
                let mut d = StrictDecoder::with_chunk(Trickle(&bytes), enc, Output::Utf8, chunk);
                assert_eq!(read_all(&mut d).unwrap(), TEXT.as_bytes());
                let mut d = StrictDecoder::with_chunk(Trickle(&bytes), enc, Output::Validated, chunk);
                assert_eq!(read_all(&mut d).unwrap(), bytes);
                let digest = d.finish_digest().unwrap();
                assert_eq!(digest.0, <[u8; 32]>::from(Sha256::digest(&bytes)));
                assert_eq!(digest.1, bytes.len() as u64);
            }
        }
    }

    #[test]
    fn invalid_bytes_name_raw_offset_and_line() {
        // line 3, offset of the lone lead byte 0x83 followed by a newline
        let mut bytes = sjis("ab\nソン\n");
        let off = bytes.len() as u64;
        bytes.extend_from_slice(b"x\x83\n");
        for chunk in [4, 5, 64] {
            for output in [Output::Utf8, Output::Validated] {
                let mut d = StrictDecoder::with_chunk(Trickle(&bytes), TextEncoding::ShiftJis, output, chunk);
                let StopReason::Encoding(e) = read_all(&mut d).unwrap_err() else {
                    panic!()
                };
                assert_eq!((e.offset, e.line), (off + 1, 3), "chunk {chunk} {output:?}");
            }
        }
        // Shift_JIS bytes in a file read as UTF-8
        let mut bytes = b"<a>\n<b>".to_vec();
        let off = bytes.len() as u64;
        bytes.extend(sjis("山田"));
        let mut d = StrictDecoder::with_chunk(&bytes[..], TextEncoding::Utf8, Output::Utf8, 4);
        let StopReason::Encoding(e) = read_all(&mut d).unwrap_err() else {
            panic!()
        };
        assert_eq!((e.offset, e.line), (off, 2));
        // truncated multi-byte character at EOF
        let mut d = StrictDecoder::new(&"ab山".as_bytes()[..4], TextEncoding::Utf8, Output::Utf8);
        let StopReason::Encoding(e) = read_all(&mut d).unwrap_err() else {
            panic!()
        };
        assert_eq!((e.offset, e.line), (2, 1));
    }

    #[test]
    fn bom_accepted_for_utf8_rejected_for_shift_jis() {
        let bytes = b"\xEF\xBB\xBFH,x\n";
        let mut d = StrictDecoder::new(Trickle(bytes), TextEncoding::Utf8, Output::Utf8);
        assert_eq!(read_all(&mut d).unwrap(), b"H,x\n");
        let mut d = StrictDecoder::new(&bytes[..], TextEncoding::Utf8, Output::Validated);
        assert_eq!(read_all(&mut d).unwrap(), b"H,x\n");
        assert_eq!(d.finish_digest().unwrap().1, 7);
        let mut d = StrictDecoder::new(&bytes[..], TextEncoding::ShiftJis, Output::Validated);
        let StopReason::Encoding(e) = read_all(&mut d).unwrap_err() else {
            panic!()
        };
        assert_eq!((e.offset, e.line), (0, 1));
        let mut d = StrictDecoder::new(&b"\xEF\xBB\xBF"[..], TextEncoding::Utf8, Output::Utf8);
        assert_eq!(read_all(&mut d).unwrap(), b"");
        let mut d = StrictDecoder::new(&b""[..], TextEncoding::ShiftJis, Output::Utf8);
        assert_eq!(read_all(&mut d).unwrap(), b"");
    }

    #[test]
    fn lines_and_size_limit() {
        let mut d = StrictDecoder::with_chunk(&b"a\nb\nccccccccccccccc"[..], TextEncoding::Utf8, Output::Utf8, 4);
        let mut s = String::new();
        d.read_line(&mut s).unwrap();
        assert_eq!(d.line(), 2);
        d.mark();
        d.set_limit(6);
        let mut rest = Vec::new();
        assert!(d.read_to_end(&mut rest).is_err());
        assert_eq!(d.stop_reason(), Some(&StopReason::SizeLimit));
    }

    #[test]
    fn field_decoding_is_strict() {
        let mut s = String::new();
        decode_field(&sjis("ソン﨑"), TextEncoding::ShiftJis, &mut s).unwrap();
        assert_eq!(s, "ソン﨑");
        assert_eq!(
            decode_field(b"ab\x83", TextEncoding::ShiftJis, &mut String::new()),
            Err(2)
        );
        assert_eq!(decode_field(b"a\xFF", TextEncoding::Utf8, &mut String::new()), Err(1));
        assert_eq!(
            decode_field(&sjis("山"), TextEncoding::Utf8, &mut String::new()),
            Err(0)
        );
    }

    mod roundtrip {
        use super::super::super::{Format, RecordOutcome, TextEncoding};
        use crate::domain::{Catalog, FileKind, RawRecord, records};
        use crate::formats::testdata::{header, read, valid, write};
        use proptest::prelude::*;

        fn text(chars: &'static [char], len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
            proptest::collection::vec(proptest::sample::select(chars), len).prop_map(|v| v.into_iter().collect())
        }

        const FULL: &[char] = &[
            '山', '田', '髙', '﨑', 'ソ', 'ゾ', '‐', '表', '十', '　', '①', '㈱', 'ー', '能',
        ];
        const FREE: &[char] = &[
            'a', 'Z', '0', ' ', ',', '"', '<', '>', '&', ']', '\'', ';', '東', 'ソ', 'ゾ', '‐', 'ﾃ', '-', '\\',
        ];

        proptest! {
            #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
            #[test]
            fn random_valid_records_read_back_identical(
                names in proptest::collection::vec(text(FULL, 1..20), 1..6),
                addrs in proptest::collection::vec(text(FREE, 0..40), 1..6),
                symbol in text(FREE, 0..20),
                item in text(FREE, 0..30),
                xml in any::<bool>(),
                sjis in any::<bool>(),
            ) {
                let format = if xml { Format::Xml } else { Format::Csv };
                let enc = if sjis { TextEncoding::ShiftJis } else { TextEncoding::Utf8 };
                let cat = Catalog::default_catalog();
                for kind in [FileKind::SubscriberChange, FileKind::Fukuhon] {
                    let recs: Vec<_> = names.iter().zip(&addrs).enumerate().map(|(i, (n, a))| {
                        let (mut v, mut items) = valid(kind, i as u64 + 1);
                        if kind == FileKind::SubscriberChange {
                            v[11] = n.clone();
                            v[21] = a.clone();
                            v[5] = symbol.clone();
                        } else {
                            v[5] = "TM00000000000004".into();
                            items = vec![("001".into(), "20261201".into()), ("002".into(), item.clone())];
                        }
                        (v, items)
                    }).collect();
                    let bytes = write(header(kind, format, enc), &recs);
                    let (r, out) = read(&bytes);
                    let s = r.map_err(|e| TestCaseError::fail(format!("{:?}", e.diagnostics)))?;
                    prop_assert_eq!(s.records, recs.len() as u64);
                    for ((v, items), o) in recs.iter().zip(&out) {
                        let raw = RawRecord { values: v.iter().cloned().map(Some).collect(), items: items.clone() };
                        let want = records::build(kind, v[0].parse().unwrap(), &raw, &cat).unwrap();
                        match o {
                            RecordOutcome::Accepted(got) => prop_assert_eq!(got, &want),
                            RecordOutcome::Rejected { faults, .. } => return Err(TestCaseError::fail(format!("{faults:?}"))),
                        }
                    }
                }
            }
        }
    }
}
