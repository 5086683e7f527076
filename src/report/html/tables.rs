//! The page's lists, below the run's facts: inputs, rejects, carries, flag changes, pending
//! flags, every worklist with rows, outputs. Each is a [`Section`] (id, headings, columns, where
//! the full list is) and a row function; [`Section::table`] is the one table builder, which
//! shows at most [`MAX_ROWS`](super::MAX_ROWS) rows of a [`ListHead`] and links the full list when it shows less
//! than all of it.

use super::{ALL_CRITICAL, CRITICAL, Input, Link, ListHead, WorklistHead, link, xlsx_link};
use crate::report::{FlagChangeKind, InputStatus, Report, labels};
use serde::Serialize;

#[derive(Serialize)]
pub(super) struct Column {
    ja: String,
    en: String,
}

#[derive(Serialize)]
pub(super) struct Row {
    cells: Vec<String>,
    critical: bool,
}

/// A list on the page: at most [`MAX_ROWS`](super::MAX_ROWS) rows of `total`.
#[derive(Serialize)]
pub(super) struct Table {
    id: String,
    heading: String,
    heading_en: String,
    todo: String,
    columns: Vec<Column>,
    rows: Vec<Row>,
    total: u64,
    /// More rows than shown: where the full list is.
    more: Option<Vec<Link>>,
}

/// A list's place on the page: everything its table holds but the rows.
struct Section {
    id: String,
    heading: String,
    heading_en: String,
    todo: String,
    columns: Vec<Column>,
    /// Where the full list is, linked when the page shows only its head.
    full: Vec<Link>,
}

impl Section {
    /// The table of a list's head, rows made by `row`; none for a list with no row.
    fn table<T>(self, head: ListHead<'_, T>, row: impl Fn(&T) -> Row) -> Option<Table> {
        if head.total == 0 {
            return None;
        }
        let shown = head.shown();
        Some(Table {
            id: self.id,
            heading: self.heading,
            heading_en: self.heading_en,
            todo: self.todo,
            columns: self.columns,
            rows: shown.iter().map(row).collect(),
            total: head.total,
            more: (head.total > shown.len() as u64).then_some(self.full),
        })
    }
}

/// Columns given as (Japanese, English) pairs.
fn pairs(names: &[(&str, &str)]) -> Vec<Column> {
    names
        .iter()
        .map(|(ja, en)| Column {
            ja: (*ja).into(),
            en: (*en).into(),
        })
        .collect()
}

/// Columns named by their CSV column names, labelled through [`labels::column_ja`].
fn columns(names: &[&str]) -> Vec<Column> {
    names
        .iter()
        .map(|n| Column {
            ja: labels::column_ja(n).to_owned(),
            en: n.replace('_', " "),
        })
        .collect()
}

fn plain(cells: Vec<String>) -> Row {
    Row { cells, critical: false }
}

fn flags_ja(cell: &str) -> String {
    cell.split_whitespace()
        .map(labels::flag_ja)
        .collect::<Vec<_>>()
        .join("・")
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The lists, each at most [`MAX_ROWS`](super::MAX_ROWS) rows; lists with no row are left out.
pub(super) fn tables(input: &Input<'_>) -> Vec<Table> {
    let r = input.report;
    [inputs(r), rejects(input), carries(r), flag_changes(r), pending(input)]
        .into_iter()
        .chain(input.worklists.iter().map(worklist))
        .chain([outputs(r)])
        .flatten()
        .collect()
}

fn inputs(r: &Report) -> Option<Table> {
    Section {
        id: "inputs".into(),
        heading: "入力ファイル".into(),
        heading_en: "Inputs".into(),
        todo: String::new(),
        columns: pairs(&[
            ("ファイル", "file"),
            ("種別", "kind"),
            ("形式", "format"),
            ("文字コード", "encoding"),
            ("状態", "status"),
            ("件数", "records"),
            ("不備", "rejected"),
            ("備考", "note"),
        ]),
        full: vec![xlsx_link(labels::SUMMARY_SHEET)],
    }
    .table(ListHead::of(&r.inputs), |i| Row {
        critical: i.status == InputStatus::Rejected,
        cells: vec![
            i.name.clone(),
            i.kind.clone(),
            i.format.clone(),
            i.encoding.clone(),
            labels::input_status_ja(i.status).to_owned(),
            i.records.to_string(),
            i.rejected.to_string(),
            i.note.clone().unwrap_or_default(),
        ],
    })
}

fn rejects(input: &Input<'_>) -> Option<Table> {
    Section {
        id: "rejects".into(),
        heading: "不備一覧".into(),
        heading_en: "Rejects".into(),
        todo: "対応は「今日の対応」のエラーコード別の説明を参照。 / What to do per code: see above.".into(),
        columns: pairs(&[
            ("ファイル", "file"),
            ("レコード番号", "RecordSequence"),
            ("行", "line"),
            ("バイト位置", "byte offset"),
            ("項目", "field"),
            ("エラーコード", "code"),
            ("重要", "critical"),
            ("内容", "message"),
        ]),
        full: vec![link("rejects.csv"), xlsx_link(labels::REJECTS_SHEET)],
    }
    .table(input.rejects, |x| Row {
        critical: x.critical,
        cells: vec![
            x.file.clone(),
            opt(x.record_sequence),
            opt(x.line),
            opt(x.byte_offset),
            x.field.clone().unwrap_or_default(),
            x.code.clone(),
            if x.critical {
                "重要 CRITICAL".into()
            } else {
                String::new()
            },
            x.message.clone(),
        ],
    })
}

fn carries(r: &Report) -> Option<Table> {
    Section {
        id: "carries".into(),
        heading: "フラグ引継（年齢到達）".into(),
        heading_en: "Age-transition carries (R3)".into(),
        todo: String::new(),
        columns: pairs(&[
            ("国保 保険者番号", "from insurer"),
            ("国保 被保険者枝番", "from key"),
            ("後期 保険者番号", "to insurer"),
            ("後期 被保険者枝番", "to key"),
            ("フラグ", "flags"),
            ("照合", "rule"),
            ("照合元", "via"),
            ("資格取得日", "QualificationDate"),
            ("未来日", "future"),
        ]),
        full: vec![link("report.json")],
    }
    .table(ListHead::of(&r.carries), |c| {
        plain(vec![
            c.from_insurer.clone(),
            c.from_subscriber_key.clone(),
            c.to_insurer.clone(),
            c.to_subscriber_key.clone(),
            c.flags
                .iter()
                .map(|f| labels::flag_ja(f))
                .collect::<Vec<_>>()
                .join("・"),
            labels::match_rule_ja(c.rule).to_owned(),
            labels::carry_via_ja(c.via).to_owned(),
            c.qualification_date.clone(),
            if c.future_dated { "○".into() } else { String::new() },
        ])
    })
}

fn flag_changes(r: &Report) -> Option<Table> {
    Section {
        id: "flag-changes".into(),
        heading: if r.dry_run {
            "フラグ変更（本実行で変わるもの）".into()
        } else {
            "フラグ変更".into()
        },
        heading_en: "Flag changes".into(),
        todo: String::new(),
        columns: pairs(&[
            ("保険者番号", "insurer"),
            ("被保険者枝番", "key"),
            ("情報コード", "InfoCode"),
            ("フラグ", "flag"),
            ("変更", "change"),
        ]),
        full: vec![link("report.json")],
    }
    .table(ListHead::of(&r.flag_changes), |f| Row {
        critical: f.change == FlagChangeKind::Released,
        cells: vec![
            f.insurer.clone(),
            f.subscriber_key.clone(),
            f.info_code.clone().unwrap_or_default(),
            labels::flag_ja(&f.flag_type),
            labels::flag_change_ja(f.change).to_owned(),
        ],
    })
}

fn pending(input: &Input<'_>) -> Option<Table> {
    Section {
        id: "pending".into(),
        heading: "保留中のフラグ（加入の到着待ち）".into(),
        heading_en: "Pending flags (R7)".into(),
        todo: "加入の異動が届くと自動で適用されます。長く残る場合は送付元に加入の異動を確認してください。".into(),
        columns: pairs(&[
            ("保険者番号", "insurer"),
            ("被保険者枝番", "key"),
            ("フラグ", "flag"),
            ("操作", "operation"),
            ("情報コード", "InfoCode"),
            ("ファイル", "file"),
            ("レコード番号", "RecordSequence"),
        ]),
        full: vec![link("report.json")],
    }
    .table(input.pending_flags, |p| {
        plain(vec![
            p.insurer.clone(),
            p.subscriber_key.clone(),
            p.flag_type.name_ja().to_owned(),
            labels::operation_ja(p.operation).to_owned(),
            p.info_code.clone().unwrap_or_default(),
            p.file.clone(),
            p.record_sequence.to_string(),
        ])
    })
}

fn worklist(w: &WorklistHead<'_>) -> Option<Table> {
    let crit_col = w.columns.iter().position(|c| *c == CRITICAL);
    let all_crit = ALL_CRITICAL.contains(&w.name);
    let sheet = labels::worklist_ja(w.name, w.title);
    Section {
        id: format!("worklist-{}", w.name),
        heading: format!("作業リスト: {sheet}"),
        heading_en: w.title.split(" — ").nth(1).unwrap_or(w.title).to_owned(),
        todo: labels::worklist_todo(w.name).unwrap_or_default().to_owned(),
        columns: columns(w.columns),
        full: vec![link(&format!("{}.csv", w.name)), xlsx_link(&sheet)],
    }
    .table(w.rows, |row| Row {
        critical: all_crit || crit_col.is_some_and(|i| row.get(i).is_some_and(|c| c == CRITICAL)),
        cells: row
            .iter()
            .zip(w.columns.iter().chain(std::iter::repeat(&"")))
            .map(|(c, col)| worklist_cell(col, c))
            .collect(),
    })
}

/// A worklist cell as the page shows it: flag codes and hand-off flag values in words.
fn worklist_cell(col: &str, c: &str) -> String {
    match col {
        "flags" | "flag" | "flag_type" => flags_ja(c),
        // hand-off flag values: 0 none, 1/2 set (自己情報提供不可: with that ReasonCode)
        "self_info" | "non_disclosure" | "auto_response" => match c {
            "0" => "－".to_owned(),
            "1" if col != "self_info" => "設定".to_owned(),
            "1" | "2" => format!("設定（理由{c}）"),
            _ => c.to_owned(),
        },
        CRITICAL if c == CRITICAL => "重要".to_owned(),
        _ => c.to_owned(),
    }
}

fn outputs(r: &Report) -> Option<Table> {
    Section {
        id: "outputs".into(),
        heading: "出力ファイル".into(),
        heading_en: "Outputs".into(),
        todo: String::new(),
        columns: pairs(&[
            ("ファイル", "file"),
            ("種別", "kind"),
            ("件数", "records"),
            ("バイト数", "bytes"),
            ("SHA-256", ""),
        ]),
        full: vec![link("report.json")],
    }
    .table(ListHead::of(&r.outputs), |f| {
        plain(vec![
            f.name.clone(),
            f.kind.clone(),
            f.records.to_string(),
            f.bytes.to_string(),
            f.sha256.clone(),
        ])
    })
}
