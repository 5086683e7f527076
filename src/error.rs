//! Error codes of the spec (§7) and the diagnostics that carry them.
//!
//! A [`Diagnostic`] names where a problem is (file, line or byte offset, RecordSequence, field)
//! and which spec code applies. Messages are written by this crate, never copied from input
//! values, so a My Number or a flagged subscriber's address cannot leak through an error.

use serde::Serialize;
use std::fmt;

/// The spec's error codes (interface.md §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    Encoding,
    XmlSyntax,
    DtdForbidden,
    Schema,
    FieldFormat,
    CheckDigit,
    Date,
    Code,
    TrailerCount,
    Sequence,
    FileIdReused,
    StateConflict,
    DisclosureConflict,
    UnmappableChar,
    FlagWouldBeCleared,
    /// R1a: a flag event older than the flag's current state.
    StaleEvent,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::Encoding,
        ErrorCode::XmlSyntax,
        ErrorCode::DtdForbidden,
        ErrorCode::Schema,
        ErrorCode::FieldFormat,
        ErrorCode::CheckDigit,
        ErrorCode::Date,
        ErrorCode::Code,
        ErrorCode::TrailerCount,
        ErrorCode::Sequence,
        ErrorCode::FileIdReused,
        ErrorCode::StateConflict,
        ErrorCode::DisclosureConflict,
        ErrorCode::UnmappableChar,
        ErrorCode::FlagWouldBeCleared,
        ErrorCode::StaleEvent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Encoding => "E_ENCODING",
            ErrorCode::XmlSyntax => "E_XML_SYNTAX",
            ErrorCode::DtdForbidden => "E_DTD_FORBIDDEN",
            ErrorCode::Schema => "E_SCHEMA",
            ErrorCode::FieldFormat => "E_FIELD_FORMAT",
            ErrorCode::CheckDigit => "E_CHECK_DIGIT",
            ErrorCode::Date => "E_DATE",
            ErrorCode::Code => "E_CODE",
            ErrorCode::TrailerCount => "E_TRAILER_COUNT",
            ErrorCode::Sequence => "E_SEQUENCE",
            ErrorCode::FileIdReused => "E_FILE_ID_REUSED",
            ErrorCode::StateConflict => "E_STATE_CONFLICT",
            ErrorCode::DisclosureConflict => "E_DISCLOSURE_CONFLICT",
            ErrorCode::UnmappableChar => "E_UNMAPPABLE_CHAR",
            ErrorCode::FlagWouldBeCleared => "E_FLAG_WOULD_BE_CLEARED",
            ErrorCode::StaleEvent => "E_STALE_EVENT",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One problem found in an input file, at file or record level.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// File name as given on the command line (or found in the inbox).
    pub file: String,
    /// 1-based line in the file, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 0-based byte offset in the file as stored (before decoding), where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub byte_offset: Option<u64>,
    /// RecordSequence of the record, for record-level problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_sequence: Option<u64>,
    /// Spec field name (e.g. `InsurerNumber`), where one field is at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub code: ErrorCode,
    /// Human-readable explanation. Never contains an input value of a sensitive field.
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: impl Into<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            line: None,
            byte_offset: None,
            record_sequence: None,
            field: None,
            code,
            message: message.into(),
        }
    }
    /// Sets the 1-based line; 0 (not known) leaves it unset, so no message says "line 0".
    pub fn line(mut self, line: u64) -> Self {
        self.line = (line > 0).then_some(line);
        self
    }
    pub fn offset(mut self, off: u64) -> Self {
        self.byte_offset = Some(off);
        self
    }
    pub fn seq(mut self, seq: u64) -> Self {
        self.record_sequence = Some(seq);
        self
    }
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(o) = self.byte_offset {
            write!(f, " (byte {o})")?;
        }
        if let Some(s) = self.record_sequence {
            write!(f, " RecordSequence {s}")?;
        }
        if let Some(fl) = &self.field {
            write!(f, " field {fl}")?;
        }
        write!(f, ": {}: {}", self.code, self.message)
    }
}

/// A problem with one field value, before it is placed in a file/record context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub code: ErrorCode,
    pub message: String,
}

impl FieldError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        FieldError {
            code,
            message: message.into(),
        }
    }
    pub fn format(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::FieldFormat, message)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Input text echoed in a message or report (element names and the like) with every run of six
/// or more digits masked as `******`: such a run may be a My Number, a phone or an account
/// number that a malformed file put where a name belongs.
pub fn mask_digit_runs(s: &str) -> std::borrow::Cow<'_, str> {
    let mut run = 0;
    let long = s.chars().any(|c| {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        run >= 6
    });
    if !long {
        return s.into();
    }
    let mut out = String::with_capacity(s.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 6 {
            out.push_str("******");
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out.into()
}

/// A field-level error with the field's spec name.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldFault {
    pub field: String,
    pub error: FieldError,
}

#[cfg(test)]
mod mask_tests {
    #[test]
    fn long_digit_runs_are_masked_short_ones_kept() {
        assert_eq!(super::mask_digit_runs("<Address123456789012>"), "<Address******>");
        assert_eq!(super::mask_digit_runs("a12345b1234567"), "a12345b******");
        assert_eq!(super::mask_digit_runs("Name"), "Name");
    }
}
