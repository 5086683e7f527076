//! The raw reader's state machine for CSV: an `H` row, the rows (`01`, `02`, `04` grouped by
//! subscriber, or `D` records), a `T` row.
//!
//! Under [`Strictness::Own`] rows end with CRLF (the file too), a group is a row, the row after
//! it and the `04` rows that follow (what is wrong with it is the typer's to say), and the
//! trailer is handed out once the end of the file is checked. Under [`Strictness::Snapshot`] rows
//! are split on LF (a CR before it is dropped), blank rows are skipped, a group runs from a `01`
//! row to the next `01` or `T` row, and the trailer is handed out where it stands.

use super::raw::{Input, RawError, RawGroup, RawHeader, RawPiece, RawRow, RowKind, Strictness, stream_error};
use crate::domain::FileKind;
use crate::error::ErrorCode;
use crate::formats::TextEncoding;
use crate::formats::decode::{StopReason, StrictDecoder, decode_field};
use std::io::Read;

/// Remembers the last two bytes that went through (a CSV file ends with CRLF).
pub(super) struct Tail<R> {
    inner: R,
    last: [u8; 2],
    len: u64,
}

impl<R: Read> Read for Tail<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        match n {
            0 => {}
            1 => self.last = [self.last[1], buf[0]],
            _ => self.last = [buf[n - 2], buf[n - 1]],
        }
        self.len += n as u64;
        Ok(n)
    }
}

/// A csv error on a stream read through [`StrictDecoder`], as a file-level error.
pub fn csv_error<R: Read>(e: &csv::Error, dec: &StrictDecoder<R>) -> RawError {
    match dec.stop_reason() {
        Some(StopReason::Encoding(d)) => RawError {
            code: ErrorCode::Encoding,
            message: d.message.clone(),
            line: Some(d.line),
            offset: Some(d.offset),
        },
        Some(StopReason::SizeLimit) => RawError::new(ErrorCode::Schema, "a row is longer than the size limit"),
        None => {
            let d = RawError::new(ErrorCode::Schema, "malformed CSV");
            match e.position() {
                Some(p) => d.line(p.line()),
                None => d,
            }
        }
    }
}

/// Decodes one CSV field strictly (the stream is validated already; this cannot fail then).
pub fn field_text(bytes: &[u8], encoding: TextEncoding) -> Result<String, ErrorCode> {
    let mut s = String::new();
    decode_field(bytes, encoding, &mut s).map_err(|_| ErrorCode::Encoding)?;
    Ok(s)
}

/// Rows are split on LF only (so the csv crate's line numbers are those of the row's start); a
/// CR before it is dropped from the last field here.
pub fn strip_cr(rec: &mut csv::ByteRecord) {
    let n = rec.len();
    if let Some(last) = rec.get(n.wrapping_sub(1)).filter(|f| f.ends_with(b"\r")) {
        let last = last[..last.len() - 1].to_vec();
        rec.truncate(n - 1);
        rec.push_field(&last);
    }
}

/// A CSV row after the `H` row of this program's own output.
pub(super) enum OwnLine {
    Trailer(Vec<String>),
    Row(RawRow),
}

/// The first row of this program's own output: the `H` row of a linkage kind.
pub(super) fn own_header(cells: &[String]) -> Result<RawHeader, RawError> {
    if cells[0] != "H" {
        return Err(RawError::own("row 1: the first row must be the H row"));
    }
    let kind = cells
        .get(1)
        .and_then(|k| FileKind::from_name(k))
        .filter(|k| !k.is_input())
        .ok_or_else(|| RawError::own("row 1: not a linkage file (SubscriberLinkage, FlagLinkage, FukuhonLinkage)"))?;
    if cells.len() != 8 || cells[2] != "1" {
        return Err(RawError::own(
            "row 1: the H row must be H,<kind>,1,FileIdentifier,Sender,CreationTime,FileSequence,CharacterCode",
        ));
    }
    Ok(RawHeader {
        kind,
        values: [3, 4, 5, 6].map(|i| Some(cells[i].clone())),
        line: 1,
    })
}

/// A row after the `H` row of this program's own output, the `at`th.
pub(super) fn own_line(cells: Vec<String>, at: u64, kind: FileKind) -> Result<OwnLine, RawError> {
    let row_kind = match cells[0].as_str() {
        "T" => return Ok(OwnLine::Trailer(cells[1..].to_vec())),
        "01" => RowKind::Basic,
        "02" => RowKind::Control,
        "04" => RowKind::Qualification,
        "D" => RowKind::Record,
        _ => return Err(RawError::own(format!("row {at}: unknown row kind"))),
    };
    let (values, items) = if row_kind == RowKind::Record && kind.has_items() {
        let n = FileKind::FukuhonLinkage.fields().len();
        if cells.len() < n + 1 || !(cells.len() - n - 1).is_multiple_of(2) {
            return Err(RawError::own(format!(
                "row {at}: a FukuhonLinkage row has {n} fields then ItemCode,Value pairs"
            )));
        }
        let items = cells[n + 1..].chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
        (cells[1..=n].to_vec(), items)
    } else {
        (cells[1..].to_vec(), Vec::new())
    };
    Ok(OwnLine::Row(RawRow {
        kind: row_kind,
        values,
        items,
        at,
    }))
}

pub(super) struct CsvRaw<R: Read> {
    rd: csv::Reader<Tail<StrictDecoder<Input<R>>>>,
    rec: csv::ByteRecord,
    strictness: Strictness,
    encoding: TextEncoding,
    /// The file's kind, once the `H` row is read.
    kind: Option<FileKind>,
    /// Rows read (own output: the csv crate skips blank lines, as the whole-file parse did).
    at: u64,
    /// `01`, `02` and `04` rows read (snapshot).
    rows: u64,
    /// The `T` row's values after `T`: kept for the end (own output).
    trailer: Option<Vec<String>>,
    trailer_seen: bool,
    eof: bool,
    /// A row read ahead: a group ends at the first row after its `01` and `02` that is not `04`
    /// (own output).
    ahead: Option<RawRow>,
    /// The group being read (snapshot).
    group: Option<RawGroup>,
    /// The trailer, handed out after the group it closed (snapshot).
    pending: Option<RawPiece>,
    /// The current record is read again: the `01` row that closed the group handed out (snapshot).
    replay: bool,
}

impl<R: Read> CsvRaw<R> {
    pub(super) fn new(dec: StrictDecoder<Input<R>>, strictness: Strictness, encoding: TextEncoding) -> Self {
        let mut builder = csv::ReaderBuilder::new();
        builder.has_headers(false).flexible(true);
        if strictness == Strictness::Snapshot {
            builder.terminator(csv::Terminator::Any(b'\n'));
        }
        CsvRaw {
            rd: builder.from_reader(Tail {
                inner: dec,
                last: [0; 2],
                len: 0,
            }),
            rec: csv::ByteRecord::new(),
            strictness,
            encoding,
            kind: None,
            at: 0,
            rows: 0,
            trailer: None,
            trailer_seen: false,
            eof: false,
            ahead: None,
            group: None,
            pending: None,
            replay: false,
        }
    }

    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    pub(super) fn into_decoder(self) -> StrictDecoder<Input<R>> {
        self.rd.into_inner().inner
    }

    pub(super) fn next_piece(&mut self) -> Result<Option<RawPiece>, RawError> {
        match self.strictness {
            Strictness::Own => self.own_piece(),
            Strictness::Snapshot => self.snapshot_piece(),
        }
    }

    // -- this program's own output --------------------------------------------------------------

    fn own_piece(&mut self) -> Result<Option<RawPiece>, RawError> {
        let Some(kind) = self.kind else {
            return self.own_header().map(|h| Some(RawPiece::Header(h)));
        };
        let piece = if kind == FileKind::SubscriberLinkage {
            self.own_group()?.map(|rows| {
                RawPiece::Group(RawGroup {
                    rows,
                    ..RawGroup::default()
                })
            })
        } else {
            self.own_row()?.map(RawPiece::Record)
        };
        Ok(piece.or_else(|| self.trailer.take().map(|values| RawPiece::Trailer { values, line: 0 })))
    }

    fn own_cells(&mut self) -> Result<Option<Vec<String>>, RawError> {
        match self.rd.read_byte_record(&mut self.rec) {
            Ok(true) => {
                self.at += 1;
                self.rd.get_mut().inner.mark(); // the size limit bounds one row
                Ok(Some(
                    self.rec
                        .iter()
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .collect(),
                ))
            }
            Ok(false) => Ok(None),
            Err(_) => Err(stream_error(
                &self.rd.get_ref().inner,
                &format!("row {}", self.at + 1),
                "not well-formed CSV",
            )),
        }
    }
    /// The first row: the `H` row of a linkage kind.
    fn own_header(&mut self) -> Result<RawHeader, RawError> {
        let cells = self.own_cells()?.ok_or_else(|| RawError::own("empty file"))?;
        let header = own_header(&cells)?;
        self.kind = Some(header.kind);
        Ok(header)
    }
    /// The next `01`/`02`/`04`/`D` row; `None` once the trailer and the end are read and checked.
    fn own_row(&mut self) -> Result<Option<RawRow>, RawError> {
        if let Some(r) = self.ahead.take() {
            return Ok(Some(r));
        }
        let kind = self.kind.unwrap_or(FileKind::SubscriberLinkage);
        while !self.eof {
            let Some(cells) = self.own_cells()? else {
                self.eof = true;
                let t = self.rd.get_ref();
                if t.len < 2 || t.last != *b"\r\n" {
                    return Err(RawError::own("the last row does not end with CRLF (truncated?)"));
                }
                if self.trailer.is_none() {
                    return Err(RawError::own("no trailer (truncated?)"));
                }
                break;
            };
            if self.trailer.is_some() {
                return Err(RawError::own(format!("row {}: a row after the trailer", self.at)));
            }
            match own_line(cells, self.at, kind)? {
                OwnLine::Trailer(t) => self.trailer = Some(t),
                OwnLine::Row(r) => return Ok(Some(r)),
            }
        }
        Ok(None)
    }

    /// The rows of the next group: a row, the row after it, then the `04` rows that follow.
    fn own_group(&mut self) -> Result<Option<Vec<RawRow>>, RawError> {
        let Some(first) = self.own_row()? else {
            return Ok(None);
        };
        let mut rows = vec![first];
        if let Some(r) = self.own_row()? {
            rows.push(r);
            while let Some(r) = self.own_row()? {
                if r.kind != RowKind::Qualification {
                    self.ahead = Some(r);
                    break;
                }
                rows.push(r);
            }
        }
        Ok(Some(rows))
    }

    // -- a snapshot -----------------------------------------------------------------------------

    fn snapshot_piece(&mut self) -> Result<Option<RawPiece>, RawError> {
        if let Some(p) = self.pending.take() {
            return Ok(Some(p));
        }
        loop {
            if !std::mem::take(&mut self.replay) {
                match self.rd.read_byte_record(&mut self.rec) {
                    Ok(true) => {
                        strip_cr(&mut self.rec);
                        // the size limit bounds one row, not the file
                        self.rd.get_mut().inner.mark();
                    }
                    Ok(false) => break,
                    Err(e) => return Err(csv_error(&e, &self.rd.get_ref().inner)),
                }
            }
            let line = self.rec.position().map_or(0, |p| p.line());
            if self.rec.len() == 1 && self.rec[0].is_empty() {
                continue;
            }
            let schema = |m: &str| Err(RawError::new(ErrorCode::Schema, m).line(line));
            if self.trailer_seen {
                return schema("rows after the T (trailer) row");
            }
            if self.kind.is_none() {
                return self.snapshot_header(line).map(|h| Some(RawPiece::Header(h)));
            }
            let row_kind = match &self.rec[0] {
                b"01" => RowKind::Basic,
                b"02" => RowKind::Control,
                b"04" => RowKind::Qualification,
                b"T" => return Ok(Some(self.snapshot_trailer(line))),
                _ => return schema("unknown row kind (01, 02, 04 and T follow the H row)"),
            };
            if row_kind == RowKind::Basic {
                if let Some(g) = self.group.take() {
                    self.replay = true;
                    return Ok(Some(RawPiece::Group(g)));
                }
            }
            self.rows += 1;
            if row_kind == RowKind::Basic {
                self.group = Some(RawGroup {
                    line,
                    ..RawGroup::default()
                });
            }
            self.snapshot_row(row_kind, line)?;
        }
        if self.kind.is_none() {
            return Err(RawError::new(ErrorCode::Schema, "the file is empty"));
        }
        if !self.trailer_seen {
            return Err(RawError::new(
                ErrorCode::TrailerCount,
                "the T (trailer) row is missing: the file is truncated",
            ));
        }
        Ok(None)
    }

    fn snapshot_header(&mut self, line: u64) -> Result<RawHeader, RawError> {
        let r = &self.rec;
        if &r[0] != b"H" || r.len() != 8 || &r[1] != b"SubscriberLinkage" || &r[2] != b"1" {
            return Err(RawError::new(
                ErrorCode::Schema,
                "the first row must be H,SubscriberLinkage,1,FileIdentifier,SenderInsurerNumber,CreationTime,FileSequence,CharacterCodeIdentifier",
            )
            .line(line));
        }
        self.kind = Some(FileKind::SubscriberLinkage);
        Ok(RawHeader {
            kind: FileKind::SubscriberLinkage,
            values: [3, 4, 5, 6].map(|i| Some(field_text(&r[i], self.encoding).unwrap_or_default())),
            line,
        })
    }

    /// The `T` row, after the group it closes.
    fn snapshot_trailer(&mut self, line: u64) -> RawPiece {
        self.trailer_seen = true;
        let values = self
            .rec
            .iter()
            .skip(1)
            .map(|b| String::from_utf8(b.to_vec()).unwrap_or_default())
            .collect();
        let trailer = RawPiece::Trailer { values, line };
        match self.group.take() {
            Some(g) => {
                self.pending = Some(trailer);
                RawPiece::Group(g)
            }
            None => trailer,
        }
    }

    /// A `01`, `02` or `04` row into the open group; a wrong column count is the group's fault.
    fn snapshot_row(&mut self, kind: RowKind, line: u64) -> Result<(), RawError> {
        let Some(g) = self.group.as_mut() else {
            return Err(RawError::new(ErrorCode::Schema, "a 02 or 04 row before any 01 row").line(line));
        };
        let cols = kind.columns(FileKind::SubscriberLinkage);
        if self.rec.len() != cols.len() + 1 {
            g.faults
                .push(format!("row {} must have {} columns", kind.code(), cols.len() + 1));
        }
        let mut values = Vec::with_capacity(cols.len());
        for i in 0..cols.len() {
            match self.rec.get(i + 1).map(|b| field_text(b, self.encoding)) {
                Some(Ok(v)) => values.push(v),
                Some(Err(_)) => {
                    return Err(
                        RawError::new(ErrorCode::Encoding, "field is not valid in the declared encoding").line(line),
                    );
                }
                None => values.push(String::new()),
            }
        }
        g.rows.push(RawRow {
            kind,
            values,
            items: Vec::new(),
            at: line,
        });
        Ok(())
    }
}
