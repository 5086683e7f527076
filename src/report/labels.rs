//! Japanese names for what the report folder holds: the one place that maps a CSV column, a
//! worklist or a summary counter to what municipal staff read in the .xlsx workbook, and says
//! how a column's cells are typed there. The CSV files keep the English names (programs read
//! them; README documents them).
//!
//! Anything not listed here (a worklist or column added later) still appears, under its
//! English name, as text: the workbook is built from whatever the report holds.

/// How a column's cells are written in the workbook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKind {
    /// Text cell (identifiers, codes, names: `00131045` stays `00131045`).
    Text,
    /// `YYYYMMDD` → a date cell shown `yyyy/mm/dd` (anything else stays text).
    Date,
    /// `YYYYMMDDhhmmss` → a date-time cell shown `yyyy/mm/dd hh:mm:ss` (anything else: text).
    DateTime,
    /// A count or position → a number cell (anything else stays text).
    Number,
}

/// (CSV column, Japanese header, cell kind). Identifiers and codes are text, always.
const COLUMNS: &[(&str, &str, CellKind)] = &[
    ("insurer", "保険者番号", CellKind::Text),
    ("subscriber_key", "被保険者枝番", CellKind::Text),
    ("name", "氏名", CellKind::Text),
    ("name_kana", "氏名カナ", CellKind::Text),
    ("file", "ファイル", CellKind::Text),
    ("file_kind", "ファイル種別", CellKind::Text),
    ("record_sequence", "レコード番号", CellKind::Number),
    ("line", "行", CellKind::Number),
    ("byte_offset", "バイト位置", CellKind::Number),
    ("field", "項目", CellKind::Text),
    ("code", "エラーコード", CellKind::Text),
    ("message", "内容", CellKind::Text),
    ("critical", "重要", CellKind::Text),
    ("code_point", "文字コード", CellKind::Text),
    ("action", "対応", CellKind::Text),
    ("reason_code", "理由コード", CellKind::Text),
    ("flag_set_time", "フラグ設定日時", CellKind::DateTime),
    ("candidates", "候補", CellKind::Text),
    ("why", "理由", CellKind::Text),
    ("flagged_at", "フラグ設定先", CellKind::Text),
    ("flags", "フラグ", CellKind::Text),
    ("flag", "フラグ", CellKind::Text),
    ("flag_type", "フラグ種別", CellKind::Text),
    ("flag_ja", "フラグ名", CellKind::Text),
    ("info_code", "情報コード", CellKind::Text),
    ("note", "備考", CellKind::Text),
    ("support_measure_end", "支援措置終了日", CellKind::Date),
    ("acquisition_date", "資格取得日", CellKind::Date),
    ("qualification_date", "資格取得日", CellKind::Date),
    ("self_info", "自己情報提供不可", CellKind::Text),
    ("non_disclosure", "不開示該当", CellKind::Text),
    ("finding", "所見", CellKind::Text),
    ("municipality", "市町村コード", CellKind::Text),
    ("answered_by", "回答元", CellKind::Text),
    ("characters", "文字", CellKind::Text),
    ("reason", "理由", CellKind::Text),
    ("status", "状況", CellKind::Text),
    ("new", "新規", CellKind::Number),
    ("changed", "変更", CellKind::Number),
    ("unchanged", "変更なし", CellKind::Number),
    ("absent", "ソースになし", CellKind::Number),
    ("rejected", "不備", CellKind::Number),
    ("unapplied", "未適用", CellKind::Number),
    ("flag_losses", "フラグ喪失", CellKind::Number),
];

/// The Japanese header of a column, or its CSV name when it has none.
pub fn column_ja(name: &str) -> &str {
    COLUMNS.iter().find(|c| c.0 == name).map_or(name, |c| c.1)
}

/// How a column's cells are typed. Unlisted columns: `…_date` a date, `…_time` a date-time,
/// anything else text.
pub fn column_kind(name: &str) -> CellKind {
    match COLUMNS.iter().find(|c| c.0 == name) {
        Some(c) => c.2,
        None if name.ends_with("_date") => CellKind::Date,
        None if name.ends_with("_time") => CellKind::DateTime,
        None => CellKind::Text,
    }
}

/// (worklist, sheet name). Sheet names: at most 31 characters.
const WORKLISTS: &[(&str, &str)] = &[
    ("certificate_issuance", "資格確認書の交付"),
    ("review", "確認"),
    ("flag_confirmation", "フラグ設定の確認"),
    ("support_measure_expiry", "支援措置期限"),
    ("character_identification", "文字同定"),
    ("upcoming_transitions", "年齢到達引継"),
    ("missed", "引継漏れ"),
    ("handoff_blocked", "引継不可"),
    ("flag_losses", "フラグ喪失"),
    ("migration_summary", "移行サマリー"),
    ("diff", "移行差分"),
    ("inquiry_awaiting", "年齢到達照会（回答待ち）"),
    ("inquiry_answered", "年齢到達照会（回答済み）"),
    ("inquiry_not_written", "年齢到達照会（未作成）"),
];

/// The sheet of the rejects list.
pub const REJECTS_SHEET: &str = "不備一覧";
/// The summary sheet, first in the workbook.
pub const SUMMARY_SHEET: &str = "概要";

/// A worklist's sheet name: the table's, else the Japanese part of its title (before ` — `),
/// else its own name.
pub fn worklist_ja(name: &str, title: &str) -> String {
    if let Some(w) = WORKLISTS.iter().find(|w| w.0 == name) {
        return w.1.to_owned();
    }
    match title.split(" — ").next().map(str::trim) {
        Some(t) if !t.is_empty() && !t.is_ascii() => t.to_owned(),
        _ => name.to_owned(),
    }
}

/// Summary counters that have a Japanese name; the others are shown by their key.
const SUMMARY: &[(&str, &str)] = &[
    ("files_applied", "適用したファイル"),
    ("files_skipped", "スキップしたファイル（適用済み）"),
    ("files_rejected", "不備で受け付けなかったファイル"),
    ("records_rejected", "不備のレコード"),
    ("events_applied", "適用した異動"),
    ("subscribers_written", "連携した被保険者"),
    ("carries", "フラグ引継"),
    ("handoffs_received", "受け取った年齢到達引継"),
    ("handoffs_matched", "照合できた年齢到達引継"),
    ("pending_flags_applied", "保留から適用したフラグ"),
    ("withheld", "連携を保留した被保険者（重要）"),
    ("unpublished", "未送信の被保険者"),
    ("upcoming", "年齢到達予定（引継対象）"),
    ("missed", "引継漏れ（重要）"),
    ("already_kouki_by_disability", "障害認定で後期加入済み"),
    ("flag_losses", "フラグ喪失"),
    ("flags_to_set", "設定するフラグ"),
];

pub fn summary_ja(key: &str) -> &str {
    SUMMARY.iter().find(|s| s.0 == key).map_or(key, |s| s.1)
}

/// A run status in Japanese (report.json keeps the English value).
pub fn status_ja(status: &str) -> &str {
    match status {
        "completed" => "完了",
        "completed_with_rejects" => "完了（不備あり）",
        "completed_with_critical_findings" => "完了（至急の確認あり）",
        "aborted" => "中止（何も反映していません）",
        "refused" => "拒否（何も変更していません）",
        "rejected" => "ソース不備（何も変更していません）",
        other => other,
    }
}
