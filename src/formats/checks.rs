//! File-level checks both readers (XML and CSV) share once the bytes are decoded: typing the
//! header, RecordSequence order, a record's outcome (all of its faults) and element names safe
//! for messages, and the characters a file may hold at all. Decoding itself is
//! [`super::decode`].

use super::{FileHeader, Format, RecordOutcome, TextEncoding};
use crate::domain::{Catalog, FileKind, InsurerNumber, RawRecord, Timestamp, records, text};
use crate::error::{Diagnostic, ErrorCode};

/// Types the four header values (FileIdentifier, SenderInsurerNumber, CreationTime,
/// FileSequence); `None` = missing. Returns every fault, each with the field's own code.
pub(crate) fn type_header(
    kind: FileKind,
    format: Format,
    encoding: TextEncoding,
    values: [Option<&str>; 4],
    display: &str,
    line: u64,
) -> Result<FileHeader, Vec<Diagnostic>> {
    const NAMES: [&str; 4] = ["FileIdentifier", "SenderInsurerNumber", "CreationTime", "FileSequence"];
    let mut faults = Vec::new();
    let mut fault = |i: usize, code: ErrorCode, msg: String| {
        faults.push(Diagnostic::new(display, code, msg).line(line).field(NAMES[i]));
    };
    for (i, v) in values.iter().enumerate() {
        if v.is_none_or(|v| v.is_empty()) {
            fault(i, ErrorCode::Schema, format!("file header: {} is required", NAMES[i]));
        }
    }
    let present = |i: usize| values[i].filter(|v| !v.is_empty());
    let id = present(0).and_then(|v| match text::validate_text(v, "FileIdentifier", 1, 40) {
        Ok(()) => Some(v.to_owned()),
        Err(e) => {
            fault(0, e.code, format!("file header: {}", e.message));
            None
        }
    });
    let sender = present(1).and_then(|v| {
        InsurerNumber::parse(v)
            .map_err(|e| fault(1, e.code, format!("file header: {}", e.message)))
            .ok()
    });
    let time = present(2).and_then(|v| {
        Timestamp::parse(v)
            .map_err(|e| fault(2, e.code, format!("file header: CreationTime: {}", e.message)))
            .ok()
    });
    let fseq = present(3).and_then(|v| match parse_positive(v) {
        Some(n) => Some(n),
        None => {
            fault(
                3,
                ErrorCode::FieldFormat,
                "file header: FileSequence must be a positive integer".into(),
            );
            None
        }
    });
    match (id, sender, time, fseq) {
        (Some(file_identifier), Some(sender), Some(creation_time), Some(file_sequence)) if faults.is_empty() => {
            Ok(FileHeader {
                kind,
                file_identifier,
                sender,
                creation_time,
                file_sequence,
                format,
                encoding,
            })
        }
        _ => Err(faults),
    }
}

/// A positive integer in ASCII digits (leading zeros allowed), as RecordSequence and FileSequence.
pub(crate) fn parse_positive(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().filter(|&n| n > 0)
}

/// A non-negative integer in ASCII digits (RecordCount).
pub(crate) fn parse_count(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok()
}

/// Checks a record's RecordSequence against the previous one (file-level `E_SEQUENCE`).
/// RecordSequence is not sensitive, so the offending value is named when it is short and printable.
// cold path (rejects the whole file): a boxed Diagnostic would only add noise at the callers
#[allow(clippy::result_large_err)]
pub(crate) fn check_sequence(raw: Option<&str>, prev: u64, display: &str, line: u64) -> Result<u64, Diagnostic> {
    let v = raw.unwrap_or("");
    let diag = |msg: String| {
        Diagnostic::new(display, ErrorCode::Sequence, msg)
            .line(line)
            .field("RecordSequence")
    };
    match parse_positive(v) {
        None if v.is_empty() => Err(diag(
            "RecordSequence is missing; records are numbered 1, 2, … in increasing order".into(),
        )),
        None if v.len() <= 20 && v.bytes().all(|b| b.is_ascii_graphic()) => Err(diag(format!(
            "RecordSequence must be a positive integer (found \"{v}\")"
        ))),
        None => Err(diag("RecordSequence must be a positive integer".into())),
        Some(n) if n <= prev => Err(diag(format!(
            "RecordSequence {n} does not increase (previous record was {prev}); records must be numbered in strictly increasing order"
        ))),
        Some(n) => Ok(n),
    }
}

/// A record-level problem found by a reader itself (structure, size), before typing.
pub(crate) struct StructFault {
    pub field: Option<&'static str>,
    pub code: ErrorCode,
    pub message: String,
}

/// Types `raw` with [`records::build`] and merges the reader's own faults: all of the record's
/// errors, each with file, line, RecordSequence and field. A field the reader already reported
/// as `E_FIELD_FORMAT` (over the size limit, value dropped) gets no second fault from typing.
pub(crate) fn record_outcome(
    kind: FileKind,
    seq: u64,
    raw: &RawRecord,
    catalog: &Catalog,
    display: &str,
    line: u64,
    structural: &mut Vec<StructFault>,
) -> RecordOutcome {
    let built = records::build(kind, seq, raw, catalog);
    let built = match built {
        Ok(r) if structural.is_empty() => return RecordOutcome::Accepted(r),
        other => other,
    };
    let diag = |field: Option<&str>, code: ErrorCode, message: &str| {
        let mut d = Diagnostic::new(display, code, message).line(line).seq(seq);
        if let Some(f) = field {
            d = d.field(f);
        }
        d
    };
    let mut faults: Vec<Diagnostic> = structural.iter().map(|f| diag(f.field, f.code, &f.message)).collect();
    if let Err(ff) = built {
        for f in ff {
            let reported = structural
                .iter()
                .any(|s| s.field == Some(f.field.as_str()) && s.code == ErrorCode::FieldFormat);
            if !reported {
                faults.push(diag(Some(&f.field), f.error.code, &f.error.message));
            }
        }
    }
    structural.clear();
    RecordOutcome::Rejected { seq, faults }
}

/// An element name from the input, for messages: only short plain ASCII names are shown.
pub(crate) fn safe_name(name: &[u8]) -> String {
    if !name.is_empty()
        && name.len() <= 40
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    {
        format!("<{}>", crate::error::mask_digit_runs(&String::from_utf8_lossy(name)))
    } else {
        "an element".to_owned()
    }
}

/// XML 1.0 `Char` production (also what CSV input accepts and every writer writes, §1).
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}
