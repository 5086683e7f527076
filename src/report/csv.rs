//! The report folder's CSV files (`rejects.csv`, one per worklist), written with the `csv`
//! crate: RFC 4180 quoting, CRLF row ends, English snake_case column names (programs read them;
//! the .xlsx workbook has the Japanese headers), and by default UTF-8 **with a BOM**, so that
//! Excel on a Japanese Windows PC opens them without mojibake. `--report-encoding shift_jis`
//! writes CP932 instead (no BOM), for older tools; a character CP932 cannot hold is written `●`.
//!
//! A cell that a spreadsheet would take for a formula (beginning with `=`, `+`, `-` or `@`, or
//! a tab or CR) is neutralised with a leading `'`: see [`neutralise`].

use crate::formats::TextEncoding;
use crate::formats::encode::encode_replacing;
use std::borrow::Cow;

/// How the report folder's CSV files are encoded (`--report-encoding`, config `report_encoding`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
pub enum ReportEncoding {
    /// UTF-8 with a byte order mark (what Excel needs to read UTF-8).
    #[default]
    #[value(name = "utf-8", alias = "utf8")]
    #[serde(rename = "utf-8")]
    Utf8,
    /// Shift_JIS (CP932), no BOM; characters it cannot hold are written `●`.
    #[value(name = "shift_jis", alias = "sjis", alias = "cp932")]
    #[serde(rename = "shift_jis")]
    ShiftJis,
}

impl ReportEncoding {
    pub fn label(self) -> &'static str {
        match self {
            ReportEncoding::Utf8 => "utf-8",
            ReportEncoding::ShiftJis => "shift_jis",
        }
    }
}

/// The UTF-8 byte order mark.
pub const BOM: &str = "\u{feff}";

/// A cell a spreadsheet would evaluate (`=`, `+`, `-`, `@`; tab and CR, which some spreadsheets
/// strip before looking) gets a leading `'`, so it is shown as the text it is. The same rule
/// applies to the CSV files and the .xlsx workbook.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    super::neutral_cell(cell)
}

/// Writes a table as [`table`] and [`encode`] would, one row at a time: for lists as long as
/// the input (rejects), which are never held in memory whole.
pub fn write_table<W, R>(out: &mut W, enc: ReportEncoding, columns: &[&str], rows: R) -> anyhow::Result<()>
where
    W: std::io::Write + ?Sized,
    R: IntoIterator<Item = anyhow::Result<Vec<String>>>,
{
    if enc == ReportEncoding::Utf8 {
        out.write_all(BOM.as_bytes())?;
    }
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .flexible(true)
        .from_writer(Transcode {
            out,
            enc,
            pending: Vec::new(),
            encoded: Vec::new(),
        });
    w.write_record(columns.iter().map(|c| neutralise(c).into_owned()))?;
    for row in rows {
        w.write_record(row?.iter().map(|c| neutralise(c).into_owned()))?;
    }
    let mut t = w.into_inner().map_err(|e| e.into_error())?;
    t.finish()?;
    Ok(())
}

/// Passes UTF-8 through, or encodes it to Shift_JIS as [`encode`] does, at character
/// boundaries (the CSV writer may cut its buffer inside a character).
struct Transcode<'a, W: std::io::Write + ?Sized> {
    out: &'a mut W,
    enc: ReportEncoding,
    pending: Vec<u8>,
    encoded: Vec<u8>,
}

impl<W: std::io::Write + ?Sized> Transcode<'_, W> {
    fn finish(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            // the CSV writer only writes whole strings: nothing can be left but a whole character
            let text = String::from_utf8_lossy(&self.pending).into_owned();
            self.pending.clear();
            self.encoded.clear();
            encode_replacing(&mut self.encoded, &text, TextEncoding::ShiftJis);
            self.out.write_all(&self.encoded)?;
        }
        self.out.flush()
    }
}

impl<W: std::io::Write + ?Sized> std::io::Write for Transcode<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.enc == ReportEncoding::Utf8 {
            return self.out.write(buf);
        }
        self.pending.extend_from_slice(buf);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        if valid > 0 {
            let text = std::str::from_utf8(&self.pending[..valid]).expect("checked above");
            self.encoded.clear();
            encode_replacing(&mut self.encoded, text, TextEncoding::ShiftJis);
            self.out.write_all(&self.encoded)?;
            self.pending.drain(..valid);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A table as CSV text: the column row, then one row per entry, CRLF-terminated, UTF-8 with a
/// leading BOM (the file's bytes in the default encoding).
pub fn table<'a, R, C>(columns: &[&str], rows: R) -> String
where
    R: IntoIterator<Item = C>,
    C: IntoIterator<Item = &'a str>,
{
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .flexible(true)
        .from_writer(BOM.as_bytes().to_vec());
    // writing into a Vec cannot fail
    w.write_record(columns.iter().map(|c| neutralise(c).into_owned()))
        .expect("in memory");
    for row in rows {
        w.write_record(row.into_iter().map(|c| neutralise(c).into_owned()))
            .expect("in memory");
    }
    let bytes = w.into_inner().expect("in memory");
    String::from_utf8(bytes).expect("UTF-8 in, UTF-8 out")
}

/// [`table`]'s text in the chosen encoding: as it is (UTF-8 with BOM), or Shift_JIS without
/// the BOM, unmappable characters as `●`.
pub fn encode(text: &str, enc: ReportEncoding) -> Vec<u8> {
    match enc {
        ReportEncoding::Utf8 => text.as_bytes().to_vec(),
        ReportEncoding::ShiftJis => {
            let body = text.strip_prefix(BOM).unwrap_or(text);
            let mut out = Vec::with_capacity(body.len());
            encode_replacing(&mut out, body, TextEncoding::ShiftJis);
            out
        }
    }
}

/// Reads a report CSV file back (as `merge-shards` does with its shards' worklists), whatever
/// `--report-encoding` wrote it: UTF-8 with or without BOM, else Shift_JIS. Returns the column
/// row and the rows.
pub fn read_table(path: &std::path::Path) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    use anyhow::Context;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text: Cow<str> = match std::str::from_utf8(&bytes) {
        Ok(t) => t.strip_prefix(BOM).unwrap_or(t).into(),
        Err(_) => {
            let (t, _, bad) = encoding_rs::SHIFT_JIS.decode(&bytes);
            anyhow::ensure!(!bad, "{} is neither UTF-8 nor Shift_JIS", path.display());
            t
        }
    };
    let mut rd = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let columns: Vec<String> = rd
        .headers()
        .with_context(|| format!("{} has no header row", path.display()))?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut rows = Vec::new();
    for r in rd.records() {
        let r = r.with_context(|| format!("{} is not well-formed CSV", path.display()))?;
        rows.push(r.iter().map(str::to_owned).collect());
    }
    Ok((columns, rows))
}

#[cfg(test)]
mod tests {
    #[test]
    fn streamed_table_equals_the_whole_table() {
        use super::*;
        let cols = ["file", "message"];
        let rows = [
            vec!["a.csv".to_owned(), "=1+1, \"quoted\"".to_owned()],
            vec!["b.xml".to_owned(), "髙橋 𠮷野 改行\nあり".to_owned()],
            // longer than the CSV writer's buffer: it is cut inside characters
            vec![
                "c.csv".to_owned(),
                format!("{}{}", "あ".repeat(5001), "𠮷".repeat(3001)),
            ],
        ];
        for enc in [ReportEncoding::Utf8, ReportEncoding::ShiftJis] {
            let whole = encode(&table(&cols, rows.iter().map(|r| r.iter().map(String::as_str))), enc);
            let mut streamed = Vec::new();
            write_table(&mut streamed, enc, &cols, rows.iter().cloned().map(Ok)).unwrap();
            assert_eq!(streamed, whole, "{enc:?}");
        }
    }

    use super::*;

    #[test]
    fn bom_crlf_quoting_and_neutralising() {
        let t = table(&["a", "b"], [vec!["x,y", "=1+1"], vec!["\"q\"", "00131045"]]);
        assert_eq!(t, "\u{feff}a,b\r\n\"x,y\",'=1+1\r\n\"\"\"q\"\"\",00131045\r\n");
    }

    #[test]
    fn shift_jis_drops_the_bom_and_replaces_what_it_cannot_hold() {
        let t = table(&["氏名"], [vec!["山田\u{e000}"]]);
        let b = encode(&t, ReportEncoding::ShiftJis);
        let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&b);
        assert!(!bad);
        assert_eq!(text, "氏名\r\n山田●\r\n");
    }

    #[test]
    fn read_back_in_either_encoding() {
        let t = table(&["insurer", "name"], [vec!["00131045", "山田, 花子"]]);
        let dir = tempfile::tempdir().unwrap();
        for enc in [ReportEncoding::Utf8, ReportEncoding::ShiftJis] {
            let p = dir.path().join("w.csv");
            std::fs::write(&p, encode(&t, enc)).unwrap();
            let (cols, rows) = read_table(&p).unwrap();
            assert_eq!(cols, ["insurer", "name"], "{enc:?}");
            assert_eq!(rows, [["00131045", "山田, 花子"]], "{enc:?}");
        }
    }
}
