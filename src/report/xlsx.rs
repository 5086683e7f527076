//! `report.xlsx`: the report folder's worklists and rejects as one Excel workbook, for staff who
//! open every list in Excel on a Japanese Windows PC.
//!
//! Sheets: the summary (概要) first, then one per worklist (whatever worklists the report holds,
//! in the report's order), then the rejects (不備一覧). Headers are Japanese
//! ([`super::labels`]); identifiers and codes are text cells (`00131045` and 16-digit
//! SubscriberKeys stay as they are); `YYYYMMDD` dates are date cells; counts are numbers. Each
//! sheet has a frozen header row, an autofilter and column widths fitted to its content.
//!
//! The workbook is deterministic: the document's creation date is the run's as-of date, never
//! the clock, so the same run writes the same bytes. Text cells follow the CSV files' rule for
//! cells a spreadsheet could take for a formula ([`super::csv::neutralise`]).

use super::Report;
use super::csv::neutralise;
use super::labels::{self, CellKind};
use anyhow::{Context, Result};
use rust_xlsxwriter::{Color, DocProperties, ExcelDateTime, Format, FormatBorder, Url, Workbook, Worksheet, XlsxError};

/// Excel's last row is 1 048 576; one is the header.
const MAX_ROWS: usize = 1_048_575;

/// Rejects beyond which the workbook is compressed for speed rather than size.
const LARGE_ROWS: usize = 100_000;

/// A table to put on a sheet: English column names (mapped to Japanese headers) and rows.
struct Table<'a> {
    sheet: String,
    columns: Vec<&'a str>,
    rows: Box<dyn Iterator<Item = Result<Vec<String>>> + 'a>,
    len: usize,
}

struct Formats {
    header: Format,
    text: Format,
    date: Format,
    datetime: Format,
    number: Format,
    link: Format,
}

fn formats() -> Formats {
    Formats {
        header: Format::new()
            .set_bold()
            .set_background_color(Color::RGB(0xDDEBF7))
            .set_border_bottom(FormatBorder::Thin),
        text: Format::new().set_num_format("@"),
        date: Format::new().set_num_format("yyyy/mm/dd"),
        datetime: Format::new().set_num_format("yyyy/mm/dd hh:mm:ss"),
        number: Format::new().set_num_format("0"),
        link: Format::new()
            .set_font_color(Color::Blue)
            .set_underline(rust_xlsxwriter::FormatUnderline::Single),
    }
}

/// The workbook's bytes.
pub fn render(r: &Report) -> Result<Vec<u8>> {
    // rust_xlsxwriter unwraps I/O errors of its constant-memory sheets' temp files (a full disk):
    // the panic becomes this report's error, so the run ends with its exit status (3 for a full
    // disk, nothing committed), not a crash
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| render_inner(r))) {
        Ok(built) => built.context("cannot build report.xlsx"),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown failure");
            let err = if what.contains("StorageFull") || what.contains("No space left") {
                std::io::Error::from(std::io::ErrorKind::StorageFull)
            } else {
                std::io::Error::other(what.to_owned())
            };
            Err(anyhow::Error::new(err).context("cannot build report.xlsx"))
        }
    }
}

// rows are written in order (a constant-memory sheet needs it); widths are set after them

fn render_inner(r: &Report) -> Result<Vec<u8>> {
    let f = formats();
    let mut used: Vec<String> = vec![labels::SUMMARY_SHEET.to_owned(), labels::REJECTS_SHEET.to_owned()];
    let mut tables: Vec<(String, Table)> = Vec::new();
    for (name, wl) in &r.worklist_rows {
        let sheet = unique_sheet_name(&labels::worklist_ja(name, &wl.title), &mut used);
        tables.push((
            name.clone(),
            Table {
                sheet,
                columns: wl.columns.clone(),
                rows: Box::new(wl.rows.iter().map(|row| Ok(row.clone()))),
                len: wl.rows.len(),
            },
        ));
    }
    // the rejects can be as many as the input's records: read back from their spool row by row
    // onto a constant-memory sheet
    let rejects = Table {
        sheet: labels::REJECTS_SHEET.to_owned(),
        columns: super::REJECT_COLUMNS.to_vec(),
        rows: Box::new(r.rejects.iter().map(|e| e.map(|e| super::reject_cells(&e)))),
        len: r.rejects.len(),
    };

    let mut wb = Workbook::new();
    if let Some(dir) = r.rejects.dir() {
        wb.set_tempdir(dir)?;
    }
    wb.set_properties(&properties(r)?);
    if r.rejects.len() > LARGE_ROWS {
        // compressing the sheet is most of the time of a large workbook: level 1 halves it
        wb.set_zip_compression_level(1);
    }
    let critical = r.critical_rejects()?;
    summary_sheet(wb.add_worksheet(), r, critical, &tables, &f)?;
    for (_, t) in tables {
        table_sheet(wb.add_worksheet(), t, &f)?;
    }
    table_sheet(wb.add_worksheet_with_constant_memory()?, rejects, &f)?;
    Ok(wb.save_to_buffer()?)
}

/// Title, subject and a creation date taken from the run (its as-of date), not the clock.
fn properties(r: &Report) -> Result<DocProperties, XlsxError> {
    let created = parse_date(&r.as_of)
        .map(|(y, m, d)| ExcelDateTime::from_ymd(y, m, d))
        .unwrap_or_else(|| ExcelDateTime::from_ymd(2000, 1, 1))?;
    Ok(DocProperties::new()
        .set_title(format!("nhi-linkage {}", r.run_id))
        .set_subject("作業リスト・不備一覧 / worklists and rejects")
        .set_author("nhi-linkage")
        .set_creation_datetime(&created))
}

fn summary_sheet(
    ws: &mut Worksheet,
    r: &Report,
    critical: usize,
    tables: &[(String, Table)],
    f: &Formats,
) -> Result<(), XlsxError> {
    ws.set_name(labels::SUMMARY_SHEET)?;
    let head = ["区分", "項目", "値", "キー"];
    for (c, h) in head.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, *h, &f.header)?;
    }
    let mut row: u32 = 1;
    let mut text_row = |ws: &mut Worksheet, cat: &str, label: &str, value: &str, key: &str| -> Result<(), XlsxError> {
        ws.write_string_with_format(row, 0, cat, &f.text)?;
        ws.write_string_with_format(row, 1, label, &f.text)?;
        ws.write_string_with_format(row, 2, &*neutralise(value), &f.text)?;
        ws.write_string_with_format(row, 3, key, &f.text)?;
        row += 1;
        Ok(())
    };
    text_row(ws, "実行", "実行ID", &r.run_id, "run_id")?;
    text_row(ws, "実行", "状態", labels::status_ja(r.status), "status")?;
    text_row(
        ws,
        "実行",
        "ドライラン",
        if r.dry_run {
            "はい（何も反映していません）"
        } else {
            "いいえ"
        },
        "dry_run",
    )?;
    ws.write_string_with_format(row, 0, "実行", &f.text)?;
    ws.write_string_with_format(row, 1, "基準日", &f.text)?;
    write_cell(ws, row, 2, &r.as_of, CellKind::Date, f)?;
    ws.write_string_with_format(row, 3, "as_of", &f.text)?;
    row += 1;
    for (k, v) in r.summary.iter() {
        let k = k.name();
        ws.write_string_with_format(row, 0, "件数", &f.text)?;
        ws.write_string_with_format(row, 1, labels::summary_ja(&k), &f.text)?;
        ws.write_number_with_format(row, 2, v as f64, &f.number)?;
        ws.write_string_with_format(row, 3, k.as_ref(), &f.text)?;
        row += 1;
    }
    for (name, count) in &r.worklists {
        ws.write_string_with_format(row, 0, "作業リスト", &f.text)?;
        match tables.iter().find(|(n, _)| n == name) {
            Some((_, t)) => {
                let link = Url::new(format!("internal:'{}'!A1", t.sheet)).set_text(&t.sheet);
                ws.write_url_with_format(row, 1, link, &f.link)?;
            }
            None => {
                // streamed lists (e.g. a migration's diff) are in their CSV file only
                let label = format!("{}（{name}.csv のみ）", labels::worklist_ja(name, ""));
                ws.write_string_with_format(row, 1, &label, &f.text)?;
            }
        }
        ws.write_number_with_format(row, 2, *count as f64, &f.number)?;
        ws.write_string_with_format(row, 3, name, &f.text)?;
        row += 1;
    }
    ws.write_string_with_format(row, 0, "不備", &f.text)?;
    let link = Url::new(format!("internal:'{}'!A1", labels::REJECTS_SHEET)).set_text(labels::REJECTS_SHEET);
    ws.write_url_with_format(row, 1, link, &f.link)?;
    ws.write_number_with_format(row, 2, r.rejects.len() as f64, &f.number)?;
    ws.write_string_with_format(row, 3, "rejects", &f.text)?;
    row += 1;
    ws.write_string_with_format(row, 0, "不備", &f.text)?;
    ws.write_string_with_format(row, 1, "うち重要", &f.text)?;
    ws.write_number_with_format(row, 2, critical as f64, &f.number)?;
    ws.write_string_with_format(row, 3, "rejects_critical", &f.text)?;
    ws.set_freeze_panes(1, 0)?;
    ws.autofilter(0, 0, row, 3)?;
    for (c, w) in [12.0, 34.0, 44.0, 28.0].into_iter().enumerate() {
        ws.set_column_width(c as u16, w)?;
    }
    Ok(())
}

fn table_sheet(ws: &mut Worksheet, t: Table, f: &Formats) -> Result<()> {
    ws.set_name(&t.sheet)?;
    let kinds: Vec<CellKind> = t.columns.iter().map(|c| labels::column_kind(c)).collect();
    let mut widths: Vec<usize> = t
        .columns
        .iter()
        .map(|c| display_width(labels::column_ja(c)) + 3)
        .collect();
    for (c, name) in t.columns.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, labels::column_ja(name), &f.header)?;
    }
    let mut last = 0u32;
    for (i, row) in t.rows.take(MAX_ROWS).enumerate() {
        let row = row?;
        let r = i as u32 + 1;
        for (c, cell) in row.iter().enumerate() {
            let kind = kinds.get(c).copied().unwrap_or(CellKind::Text);
            write_cell(ws, r, c as u16, cell, kind, f)?;
            if let Some(w) = widths.get_mut(c) {
                *w = (*w).max(match kind {
                    CellKind::Date => 11,
                    CellKind::DateTime => 20,
                    _ => display_width(cell) + 1,
                });
            }
        }
        last = r;
    }
    let _ = t.len; // rows past Excel's limit stay in the CSV file
    ws.set_freeze_panes(1, 0)?;
    if !t.columns.is_empty() {
        ws.autofilter(0, 0, last, t.columns.len() as u16 - 1)?;
    }
    for (c, w) in widths.into_iter().enumerate() {
        ws.set_column_width(c as u16, w.clamp(8, 60) as f64)?;
    }
    Ok(())
}

fn write_cell(
    ws: &mut Worksheet,
    row: u32,
    col: u16,
    cell: &str,
    kind: CellKind,
    f: &Formats,
) -> Result<(), XlsxError> {
    match kind {
        CellKind::Date => {
            if let Some((y, m, d)) = parse_date(cell) {
                if let Ok(dt) = ExcelDateTime::from_ymd(y, m, d) {
                    ws.write_datetime_with_format(row, col, &dt, &f.date)?;
                    return Ok(());
                }
            }
        }
        CellKind::DateTime => {
            if let Some(dt) = parse_datetime(cell) {
                ws.write_datetime_with_format(row, col, &dt, &f.datetime)?;
                return Ok(());
            }
            if let Some((y, m, d)) = parse_date(cell) {
                if let Ok(dt) = ExcelDateTime::from_ymd(y, m, d) {
                    ws.write_datetime_with_format(row, col, &dt, &f.date)?;
                    return Ok(());
                }
            }
        }
        CellKind::Number => {
            if !cell.is_empty() && cell.len() <= 15 && cell.bytes().all(|b| b.is_ascii_digit()) {
                ws.write_number_with_format(row, col, cell.parse::<u64>().unwrap_or(0) as f64, &f.number)?;
                return Ok(());
            }
        }
        CellKind::Text => {}
    }
    if !cell.is_empty() {
        ws.write_string_with_format(row, col, &*neutralise(cell), &f.text)?;
    }
    Ok(())
}

/// `YYYYMMDD` with a real calendar date.
fn parse_date(s: &str) -> Option<(u16, u8, u8)> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d) = (s[..4].parse().ok()?, s[4..6].parse().ok()?, s[6..8].parse().ok()?);
    chrono::NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32)?;
    (y >= 1900).then_some((y, m, d))
}

fn parse_datetime(s: &str) -> Option<ExcelDateTime> {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d) = parse_date(&s[..8])?;
    let (h, mi, se): (u16, u8, u8) = (s[8..10].parse().ok()?, s[10..12].parse().ok()?, s[12..14].parse().ok()?);
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    ExcelDateTime::from_ymd(y, m, d).ok()?.and_hms(h, mi, se).ok()
}

/// Columns as Excel counts them: East Asian wide characters take two.
fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| match c as u32 {
            0x1100..=0x115F
            | 0x2E80..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6 => 2,
            _ => 1,
        })
        .sum()
}

/// A valid, unique (case-insensitively) sheet name of at most 31 characters.
fn unique_sheet_name(want: &str, used: &mut Vec<String>) -> String {
    let clean: String = want
        .chars()
        .map(|c| {
            if matches!(c, '[' | ']' | ':' | '*' | '?' | '/' | '\\') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let clean = clean.trim_matches('\'');
    let base: String = clean.chars().take(28).collect();
    let base = if base.is_empty() { "sheet".to_owned() } else { base };
    let mut name = base.clone();
    let mut n = 2;
    while used.iter().any(|u| u.to_lowercase() == name.to_lowercase()) {
        name = format!("{base}({n})");
        n += 1;
    }
    used.push(name.clone());
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_checked() {
        assert_eq!(parse_date("20260229"), None);
        assert_eq!(parse_date("20240229"), Some((2024, 2, 29)));
        assert!(parse_datetime("20260610101200").is_some());
        assert!(parse_datetime("20260610251200").is_none());
    }

    #[test]
    fn sheet_names_are_valid_and_unique() {
        let mut used = vec!["概要".to_owned()];
        assert_eq!(unique_sheet_name("概要", &mut used), "概要(2)");
        assert_eq!(unique_sheet_name("a/b", &mut used), "a_b");
        assert_eq!(unique_sheet_name(&"x".repeat(40), &mut used).chars().count(), 28);
    }
}
