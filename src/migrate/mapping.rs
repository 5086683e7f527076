//! Legacy exports described by a mapping file (TOML): which column holds which spec field, the
//! date format of each date column (西暦 or 和暦), value maps for codes (`男` → `1`), encoding and
//! whether there is a header row. Values then pass the same validation as any input.
//!
//! ```toml
//! encoding = "shift_jis"          # or "utf-8" (any label of the spec)
//! header = true                   # first row holds column names
//! insurer_number = "131045"       # or map InsurerNumber to a column
//! [columns]
//! SubscriberKey = { column = "被保険者枝番" }
//! Name = { position = 3 }         # 1-based column position
//! Birthdate = { column = "生年月日", date_format = "wareki_kanji" }
//! [constants]                     # fixed values for fields the export lacks
//! ReasonOfQualification = "99"
//! [values.Sex1]
//! "男" = "1"
//! ```

use super::source::{
    Desired, SUBSCRIBER_FIELDS, SourceItem, SourceSummary, build_acquisition, csv_error, diags, field_text,
    parse_flags, period_of, strip_cr,
};
use crate::domain::dates::{WarekiForm, parse_wareki};
use crate::domain::{Catalog, Date, FieldFault, InsurerNumber, SubscriberKey};
use crate::error::{Diagnostic, ErrorCode, FieldError};
use crate::formats::TextEncoding;
use crate::formats::decode::{Output, StrictDecoder};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

/// Date formats a mapping can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum DateFormat {
    /// 西暦 `20261202`
    #[serde(rename = "yyyymmdd")]
    Yyyymmdd,
    /// 西暦 `2026/12/02` (one-digit month and day accepted)
    #[serde(rename = "yyyy/mm/dd")]
    YyyySlash,
    /// 和暦 `GYYMMDD`, 1-digit era code (`3600214`)
    #[serde(rename = "wareki_packed1")]
    WarekiPacked1,
    /// 和暦 `GGYYMMDD`, 2-digit era code (`03600214`)
    #[serde(rename = "wareki_packed2")]
    WarekiPacked2,
    /// 和暦 `R06.12.02`
    #[serde(rename = "wareki_letter")]
    WarekiLetter,
    /// 和暦 `令和6年12月2日`, `令和元年5月1日`
    #[serde(rename = "wareki_kanji")]
    WarekiKanji,
}

impl DateFormat {
    /// The date as `YYYYMMDD`.
    pub fn convert(self, s: &str) -> Result<String, FieldError> {
        let form = match self {
            DateFormat::Yyyymmdd => return Date::parse(s).map(|d| d.to_string()),
            DateFormat::YyyySlash => {
                let parts: Vec<&str> = s.split('/').collect();
                let ok = parts.len() == 3
                    && parts[0].len() == 4
                    && parts[1..].iter().all(|p| (1..=2).contains(&p.len()))
                    && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()));
                if !ok {
                    return Err(FieldError::format("date must be YYYY/MM/DD"));
                }
                let n = |p: &str| p.parse::<u32>().unwrap_or(0);
                return Date::ymd(n(parts[0]) as i32, n(parts[1]), n(parts[2]))
                    .map(|d| d.to_string())
                    .ok_or_else(|| FieldError::new(ErrorCode::Date, "not a real calendar date"));
            }
            DateFormat::WarekiPacked1 => WarekiForm::Packed1,
            DateFormat::WarekiPacked2 => WarekiForm::Packed2,
            DateFormat::WarekiLetter => WarekiForm::Letter,
            DateFormat::WarekiKanji => WarekiForm::Kanji,
        };
        parse_wareki(s, form).map(|d| d.to_string())
    }
}

/// Where a field's value is in a row.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Column name in the header row.
    pub column: Option<String>,
    /// 1-based column position.
    pub position: Option<usize>,
    /// For date fields; default `yyyymmdd`.
    pub date_format: Option<DateFormat>,
}

/// A mapping file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Encoding label of the export (default UTF-8).
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// Whether the first row holds column names (default true).
    #[serde(default = "default_true")]
    pub header: bool,
    /// Shorthand for `[constants] InsurerNumber`.
    pub insurer_number: Option<String>,
    /// Field → where its value is.
    pub columns: BTreeMap<String, ColumnSpec>,
    /// Field → fixed value, for fields the export lacks.
    #[serde(default)]
    pub constants: BTreeMap<String, String>,
    /// Field → (source value → spec code). Values not listed pass through unchanged.
    #[serde(default)]
    pub values: BTreeMap<String, BTreeMap<String, String>>,
}

fn default_encoding() -> String {
    "utf-8".into()
}
fn default_true() -> bool {
    true
}

const DATE_FIELDS: &[&str] = &["Birthdate", "QualificationDate", "DisqualificationDate"];

impl Mapping {
    pub fn load(path: &Path) -> Result<Mapping> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read mapping {}", path.display()))?;
        Mapping::parse(&text).with_context(|| format!("invalid mapping {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Mapping> {
        let mut m: Mapping = toml::from_str(text)?;
        m.check()?;
        if let Some(i) = m.insurer_number.take() {
            if m.constants.insert("InsurerNumber".into(), i).is_some() {
                bail!("insurer_number and [constants] InsurerNumber both given");
            }
        }
        Ok(m)
    }

    fn check(&self) -> Result<()> {
        let known = |f: &str| SUBSCRIBER_FIELDS.contains(&f);
        for (f, spec) in &self.columns {
            if !known(f) {
                bail!(
                    "[columns] {f}: not a field a source can map (one of {})",
                    SUBSCRIBER_FIELDS.join(", ")
                );
            }
            match (&spec.column, spec.position) {
                (Some(_), None) if !self.header => {
                    bail!("[columns] {f}: `column` needs `header = true`; use `position`")
                }
                (Some(_), None) => {}
                (None, Some(p)) if p >= 1 => {}
                (None, Some(_)) => bail!("[columns] {f}: position is 1-based"),
                _ => bail!("[columns] {f}: give exactly one of `column` or `position`"),
            }
            if spec.date_format.is_some() && !DATE_FIELDS.contains(&f.as_str()) {
                bail!("[columns] {f}: date_format is only for {}", DATE_FIELDS.join(", "));
            }
            if self.constants.contains_key(f) {
                bail!("{f} is both a column and a constant");
            }
        }
        for f in self.constants.keys().chain(self.values.keys()) {
            if !known(f) {
                bail!("{f}: not a field a source can map");
            }
        }
        if TextEncoding::from_label(&self.encoding).is_none() {
            bail!("encoding {:?}: use utf-8 or shift_jis", self.encoding);
        }
        let has = |f: &str| self.columns.contains_key(f) || self.constants.contains_key(f);
        if !has("SubscriberKey") {
            bail!("[columns] SubscriberKey is required");
        }
        if !has("InsurerNumber") && self.insurer_number.is_none() {
            bail!("give insurer_number or map InsurerNumber to a column");
        }
        Ok(())
    }

    pub fn text_encoding(&self) -> TextEncoding {
        TextEncoding::from_label(&self.encoding).expect("checked")
    }
}

/// Strips ASCII and full-width spaces at both ends (fixed-width exports pad).
fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c == ' ' || c == '\u{3000}' || c == '\t')
}

/// Reads a legacy export with `m`, streaming, handing over one [`SourceItem`] per data row.
/// `Err` rejects the source whole (encoding, CSV syntax, missing header columns).
pub fn read_legacy(
    path: &Path,
    display: &str,
    m: &Mapping,
    as_of: Date,
    catalog: &Catalog,
    on_item: &mut dyn FnMut(SourceItem) -> anyhow::Result<()>,
) -> Result<Result<SourceSummary, Vec<Diagnostic>>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    read_legacy_from(file, display, m, as_of, catalog, on_item)
}

/// [`read_legacy`] on any byte stream.
pub fn read_legacy_from<R: Read>(
    input: R,
    display: &str,
    m: &Mapping,
    as_of: Date,
    catalog: &Catalog,
    on_item: &mut dyn FnMut(SourceItem) -> anyhow::Result<()>,
) -> Result<Result<SourceSummary, Vec<Diagnostic>>> {
    let enc = m.text_encoding();
    let mut dec = StrictDecoder::new(input, enc, Output::Validated);
    dec.set_limit(1024 * 1024);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(dec);
    let mut rec = csv::ByteRecord::new();
    let file_err = |d: Diagnostic| Ok(Err(vec![d]));
    let mut header_names: Option<Vec<String>> = None;
    if m.header {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {
                strip_cr(&mut rec);
                // the size limit bounds one row, not the file
                rdr.get_mut().mark();
            }
            Ok(false) => {
                return file_err(Diagnostic::new(
                    display,
                    ErrorCode::Schema,
                    "the export is empty (no header row)",
                ));
            }
            Err(e) => return file_err(csv_error(display, &e, rdr.get_ref())),
        }
        let names: Result<Vec<String>, _> = rec
            .iter()
            .map(|b| field_text(b, enc).map(|s| trim(&s).to_owned()))
            .collect();
        match names {
            Ok(n) => header_names = Some(n),
            Err(code) => return file_err(Diagnostic::new(display, code, "header row is not valid text").line(1)),
        }
    }
    let index = match mapped_columns(m, display, header_names.as_deref()) {
        Ok(index) => index,
        Err(missing) => return Ok(Err(missing)),
    };
    let mut seq = 0u64;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {
                strip_cr(&mut rec);
                // the size limit bounds one row, not the file
                rdr.get_mut().mark();
            }
            Ok(false) => break,
            Err(e) => return file_err(csv_error(display, &e, rdr.get_ref())),
        }
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() == 1 && rec[0].is_empty() {
            continue;
        }
        seq += 1;
        let (vals, faults) = row_values(m, &index, &rec);
        on_item(row_item(display, seq, line, as_of, catalog, &vals, faults))?;
    }
    let dec = rdr.into_inner();
    let (sha256, _) = dec.finish_digest().context("cannot read the export")?;
    Ok(Ok(SourceSummary {
        kind: "legacy".into(),
        format: "csv".into(),
        encoding: enc,
        records: seq,
        sha256,
        creation_time: None,
    }))
}

/// Where a mapped field is read: its column (0-based) and date format.
struct MappedColumn<'m> {
    field: &'m str,
    at: usize,
    date_format: Option<DateFormat>,
}

/// The column of each mapped field, by header name or position; `Err` names every mapped
/// column the header row lacks.
fn mapped_columns<'m>(
    m: &'m Mapping,
    display: &str,
    header_names: Option<&[String]>,
) -> Result<Vec<MappedColumn<'m>>, Vec<Diagnostic>> {
    let mut index = Vec::new();
    let mut missing = Vec::new();
    for (f, spec) in &m.columns {
        let at = match (&spec.column, spec.position, header_names) {
            (Some(c), _, Some(names)) => match names.iter().position(|n| n == c) {
                Some(i) => i,
                None => {
                    missing.push(
                        Diagnostic::new(
                            display,
                            ErrorCode::Schema,
                            format!("column {c:?} (mapped to {f}) is not in the header row"),
                        )
                        .line(1)
                        .field(f.clone()),
                    );
                    continue;
                }
            },
            (_, Some(p), _) => p - 1,
            _ => unreachable!("checked when the mapping was loaded"),
        };
        index.push(MappedColumn {
            field: f.as_str(),
            at,
            date_format: spec.date_format,
        });
    }
    if missing.is_empty() { Ok(index) } else { Err(missing) }
}

/// A data row's values by field (constants, then the mapped columns: trimmed, value-mapped,
/// dates converted to YYYYMMDD), and the faults of the fields that could not be read.
fn row_values<'m>(
    m: &'m Mapping,
    index: &[MappedColumn<'m>],
    rec: &csv::ByteRecord,
) -> (HashMap<&'m str, String>, Vec<FieldFault>) {
    let enc = m.text_encoding();
    let mut faults: Vec<FieldFault> = Vec::new();
    let mut vals: HashMap<&str, String> = HashMap::new();
    for (f, v) in &m.constants {
        vals.insert(f.as_str(), v.clone());
    }
    for c in index {
        let f = c.field;
        let Some(bytes) = rec.get(c.at) else {
            faults.push(FieldFault {
                field: f.into(),
                error: FieldError::new(ErrorCode::Schema, format!("the row has no column {}", c.at + 1)),
            });
            continue;
        };
        let text = match field_text(bytes, enc) {
            Ok(t) => t,
            Err(code) => {
                faults.push(FieldFault {
                    field: f.into(),
                    error: FieldError::new(code, "not valid text in the declared encoding"),
                });
                continue;
            }
        };
        let mut v = trim(&text).to_owned();
        if let Some(mapped) = m.values.get(f).and_then(|t| t.get(&v)) {
            v = mapped.clone();
        }
        if !v.is_empty() {
            let fmt = c
                .date_format
                .or(DATE_FIELDS.contains(&f).then_some(DateFormat::Yyyymmdd));
            if let Some(fmt) = fmt {
                match fmt.convert(&v) {
                    Ok(d) => v = d,
                    Err(e) => {
                        faults.push(FieldFault {
                            field: f.into(),
                            error: FieldError::new(e.code, format!("{} (date_format {fmt:?})", e.message)),
                        });
                        continue;
                    }
                }
            }
        }
        vals.insert(f, v);
    }
    (vals, faults)
}

/// A data row as a desired state, or rejected with all its faults.
fn row_item(
    display: &str,
    seq: u64,
    line: u64,
    as_of: Date,
    catalog: &Catalog,
    vals: &HashMap<&str, String>,
    mut faults: Vec<FieldFault>,
) -> SourceItem {
    let flags = parse_flags(vals, &mut faults);
    // fields already faulted above are absent now: don't report them twice as "required"
    let faulted: Vec<String> = faults.iter().map(|f| f.field.clone()).collect();
    let built = build_acquisition(seq, as_of, vals, catalog, false);
    match built {
        Ok(c) if faults.is_empty() => {
            let p = period_of(&c, vals.get("ReasonOfQualification").is_some_and(|v| !v.is_empty()));
            SourceItem::Record(Box::new(Desired {
                seq,
                line,
                base: c.change,
                periods: vec![p],
                flags,
            }))
        }
        other => {
            if let Err(f) = other {
                faults.extend(f.into_iter().filter(|f| !faulted.contains(&f.field)));
            }
            let key = InsurerNumber::parse(vals.get("InsurerNumber").map(String::as_str).unwrap_or(""))
                .ok()
                .zip(SubscriberKey::parse(vals.get("SubscriberKey").map(String::as_str).unwrap_or("")).ok());
            SourceItem::Rejected {
                key,
                faults: diags(display, seq, line, faults),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Sex1;

    #[test]
    fn date_formats() {
        let c = |f: DateFormat, s: &str| f.convert(s).map_err(|e| e.code);
        assert_eq!(c(DateFormat::WarekiPacked1, "3600214").unwrap(), "19850214");
        assert_eq!(c(DateFormat::WarekiPacked2, "03600214").unwrap(), "19850214");
        assert_eq!(c(DateFormat::WarekiLetter, "R06.12.02").unwrap(), "20241202");
        assert_eq!(c(DateFormat::WarekiKanji, "令和6年12月2日").unwrap(), "20241202");
        assert_eq!(c(DateFormat::WarekiKanji, "令和元年5月1日").unwrap(), "20190501");
        assert_eq!(c(DateFormat::WarekiKanji, "昭和64年1月7日").unwrap(), "19890107");
        assert_eq!(c(DateFormat::YyyySlash, "2026/1/2").unwrap(), "20260102");
        // edge cases: outside the era
        assert_eq!(c(DateFormat::WarekiKanji, "昭和64年1月8日"), Err(ErrorCode::Date));
        assert_eq!(c(DateFormat::WarekiKanji, "平成31年5月1日"), Err(ErrorCode::Date));
        assert_eq!(c(DateFormat::WarekiPacked1, "4310501"), Err(ErrorCode::Date));
        assert_eq!(c(DateFormat::WarekiLetter, "H31.04.30").unwrap(), "20190430");
        assert_eq!(c(DateFormat::YyyySlash, "2023/02/29"), Err(ErrorCode::Date));
        assert_eq!(c(DateFormat::Yyyymmdd, "2026-01-02"), Err(ErrorCode::FieldFormat));
    }

    #[test]
    fn mapping_rejects_unknown_keys_and_fields() {
        let ok = "insurer_number = \"131045\"\n[columns]\nSubscriberKey = { position = 1 }\n";
        assert!(Mapping::parse(ok).is_ok());
        assert!(Mapping::parse(&format!("bogus = 1\n{ok}")).is_err());
        assert!(
            Mapping::parse("insurer_number = \"131045\"\n[columns]\nSubscriberKey = { position = 1, x = 2 }\n")
                .is_err()
        );
        assert!(Mapping::parse("insurer_number = \"131045\"\n[columns]\nKey = { position = 1 }\n").is_err());
        assert!(
            Mapping::parse(
                "insurer_number = \"131045\"\n[columns]\nSubscriberKey = { position = 1, date_format = \"yyyymmdd\" }\n"
            )
            .is_err()
        );
        assert!(
            Mapping::parse(
                "header = false\ninsurer_number = \"131045\"\n[columns]\nSubscriberKey = { column = \"k\" }\n"
            )
            .is_err()
        );
        assert!(Mapping::parse("[columns]\nSubscriberKey = { position = 1 }\n").is_err());
        assert!(
            Mapping::parse("insurer_number = \"131045\"\n[columns]\nBirthdate = { position = 2, date_format = \"showa\" }\nSubscriberKey = { position = 1 }\n")
                .is_err()
        );
    }

    #[test]
    fn rows_are_validated_like_any_input() {
        let m = Mapping::parse(
            "header = true\ninsurer_number = \"131045\"\n[constants]\nMunicipalityCode = \"131041\"\nReasonOfQualification = \"99\"\nPersonalFamilyClassification = \"1\"\nInsuredBranchNumber = \"00\"\n\
             [columns]\nSubscriberKey = { column = \"枝番\" }\nInsuredIdentificationNumber = { column = \"番号\" }\nName = { column = \"氏名\" }\nNameKana = { column = \"カナ\" }\n\
             Sex1 = { column = \"性別\" }\nBirthdate = { column = \"生年月日\", date_format = \"wareki_kanji\" }\nQualificationDate = { column = \"取得日\", date_format = \"wareki_letter\" }\n\
             NonDisclosureFlg = { column = \"不開示\" }\n[values.Sex1]\n\"男\" = \"1\"\n\"女\" = \"2\"\n[values.NonDisclosureFlg]\n\"有\" = \"1\"\n\"無\" = \"0\"\n",
        )
        .unwrap();
        let text = "枝番,番号,氏名,カナ,性別,生年月日,取得日,不開示\n\
                    0000000000000001,1001,山田　花子,ヤマダ　ハナコ,女,昭和２６年１２月２日,R01.05.01,有\n\
                    0000000000000002,1002,山田　太郎,ﾔﾏﾀﾞ ﾀﾛｳ,男,昭和64年1月8日,R01.05.01,無\n";
        let mut items = Vec::new();
        let cat = Catalog::default_catalog();
        let s = read_legacy_from(
            text.as_bytes(),
            "t.csv",
            &m,
            Date::parse("20261201").unwrap(),
            &cat,
            &mut |i| {
                items.push(i);
                Ok(())
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.records, 2);
        let SourceItem::Record(d) = &items[0] else {
            panic!("{:?}", items[0])
        };
        assert_eq!(d.base.name_kana.as_deref(), Some("ﾔﾏﾀﾞ ﾊﾅｺ"));
        assert_eq!(d.base.birthdate, Date::parse("19511202").ok());
        assert_eq!(d.base.sex, Some(Sex1::Female));
        assert!(d.flags.non_disclosure && d.flags.self_info.is_none());
        let SourceItem::Rejected { key, faults } = &items[1] else {
            panic!()
        };
        assert!(key.is_some());
        assert_eq!(faults.len(), 1, "{faults:?}");
        assert_eq!(
            (faults[0].field.as_deref(), faults[0].code, faults[0].line),
            (Some("Birthdate"), ErrorCode::Date, Some(3))
        );
    }
}
