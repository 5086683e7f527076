//! Reading and writing the interchange files of the spec (XML and CSV, UTF-8 and Shift_JIS).
//!
//! Readers stream: a file is never held in memory whole. They check everything the spec asks at
//! file level (encoding, syntax, header, RecordSequence order, trailer count) and type each record
//! with [`crate::domain::records::build`], reporting all of a record's faults.

pub mod checks;
pub mod csv_reader;
pub mod decode;
pub mod encode;
pub mod linkage;
pub mod linkage_reader;
pub mod parallel;
mod piece;
#[cfg(test)]
pub(crate) mod testdata;
pub mod writer;
pub mod xml_reader;

use crate::domain::{Catalog, FileKind, InsurerNumber, Record, Timestamp};
use crate::error::Diagnostic;
pub use parallel::{ParallelConfig, ReadPath, read_input_with};
use serde::Serialize;
use std::path::Path;

/// On-disk syntax of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Xml,
    Csv,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Xml => "xml",
            Format::Csv => "csv",
        }
    }
}

/// Character encoding of a file. `ShiftJis` means Windows-31J / CP932 (NEC and IBM extensions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize, clap::ValueEnum)]
pub enum TextEncoding {
    #[value(name = "utf-8", alias = "utf8")]
    #[serde(rename = "utf-8")]
    Utf8,
    #[value(name = "shift_jis", alias = "sjis", alias = "cp932")]
    #[serde(rename = "shift_jis")]
    ShiftJis,
}

impl TextEncoding {
    /// Accepts the labels of the spec (case-insensitive): UTF-8; Shift_JIS, SJIS, Windows-31J, CP932, MS932.
    pub fn from_label(label: &str) -> Option<TextEncoding> {
        let l = label.trim().to_ascii_lowercase();
        match l.as_str() {
            "utf-8" | "utf8" => Some(TextEncoding::Utf8),
            "shift_jis" | "shift-jis" | "sjis" | "windows-31j" | "cp932" | "ms932" => Some(TextEncoding::ShiftJis),
            _ => None,
        }
    }
    /// Label written in XML prologs.
    pub fn xml_label(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "UTF-8",
            TextEncoding::ShiftJis => "Shift_JIS",
        }
    }
    /// CSV `CharacterCodeIdentifier`.
    pub fn csv_code(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "0",
            TextEncoding::ShiftJis => "1",
        }
    }
    pub fn from_csv_code(c: &str) -> Option<TextEncoding> {
        match c {
            "0" => Some(TextEncoding::Utf8),
            "1" => Some(TextEncoding::ShiftJis),
            _ => None,
        }
    }
    pub fn encoding_rs(self) -> &'static encoding_rs::Encoding {
        match self {
            TextEncoding::Utf8 => encoding_rs::UTF_8,
            TextEncoding::ShiftJis => encoding_rs::SHIFT_JIS,
        }
    }
}

/// The header every file starts with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileHeader {
    pub kind: FileKind,
    /// Unique per sender; 1–40 characters.
    pub file_identifier: String,
    #[serde(serialize_with = "ser_display")]
    pub sender: InsurerNumber,
    #[serde(serialize_with = "ser_display")]
    pub creation_time: Timestamp,
    pub file_sequence: u64,
    pub format: Format,
    pub encoding: TextEncoding,
}

pub fn ser_display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// What a reader hands over for each data record, in file order.
#[derive(Debug)]
pub enum RecordOutcome {
    Accepted(Record),
    /// The record is rejected; the rest of the file still applies. `faults` lists all its errors.
    Rejected {
        seq: u64,
        faults: Vec<Diagnostic>,
    },
}

/// A file read to its end without file-level errors.
#[derive(Clone, Debug)]
pub struct FileSummary {
    pub header: FileHeader,
    /// Data records read (accepted + rejected); equals the trailer's RecordCount.
    pub records: u64,
    pub rejected: u64,
    /// SHA-256 of the file's bytes as stored.
    pub sha256: [u8; 32],
    pub bytes: u64,
}

/// A file rejected whole: nothing in it may be applied.
#[derive(Clone, Debug)]
pub struct FileRejected {
    pub diagnostics: Vec<Diagnostic>,
    /// The header, when it could be read.
    pub header: Option<FileHeader>,
}

/// Size limits enforced before allocation (hostile inputs).
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest field value in bytes as stored.
    pub max_field_bytes: usize,
    /// Longest record (CSV row or XML record element) in bytes.
    pub max_record_bytes: usize,
    /// Largest file in bytes.
    pub max_file_bytes: u64,
    /// Deepest XML nesting.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_field_bytes: 4 * 1024,
            max_record_bytes: 256 * 1024,
            // several nights of a large union, or one 2M-subscriber full load; a run spools its
            // records (memory is bounded by --chunk-records, not by this)
            max_file_bytes: 4 * 1024 * 1024 * 1024,
            max_depth: 16,
        }
    }
}

/// Options shared by readers.
#[derive(Clone, Debug)]
pub struct ReadOptions<'a> {
    pub catalog: &'a Catalog,
    pub limits: Limits,
}

/// Decides whether a file is XML or CSV from its first bytes (after an optional UTF-8 BOM).
pub fn sniff_format(first: &[u8]) -> Option<Format> {
    let b = first.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(first);
    let b = b.trim_ascii_start();
    if b.starts_with(b"<") {
        Some(Format::Xml)
    } else if b.starts_with(b"H,") || b.starts_with(b"\"H\",") {
        Some(Format::Csv)
    } else {
        None
    }
}

/// Reads one input file of any kind, format and encoding, streaming. `on_record` receives every
/// record in file order. On `Err`, the file is rejected whole and the caller must discard whatever
/// `on_record` received. `display` is the name used in diagnostics.
///
/// A large file is parsed in pieces on the threads of the current rayon pool
/// ([`parallel`]); outcomes, summary and diagnostics are the same as from the serial reader.
pub fn read_input(
    path: &Path,
    display: &str,
    opts: &ReadOptions,
    on_record: &mut dyn FnMut(RecordOutcome),
) -> Result<FileSummary, FileRejected> {
    parallel::read_input_with(path, display, opts, on_record, &ParallelConfig::default()).0
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
