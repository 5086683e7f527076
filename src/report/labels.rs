//! Japanese names for what the report folder holds: the one place that maps a CSV column, a
//! worklist or a summary counter to what municipal staff read in the .xlsx workbook, and says
//! how a column's cells are typed there. The CSV files keep the English names (programs read
//! them; README documents them).
//!
//! Anything not listed here (a worklist or column added later) still appears, under its
//! English name, as text: the workbook is built from whatever the report holds.

use super::{FlagChangeKind, InputStatus, PendingOperation, ReportStatus};
use crate::domain::FlagType;
use crate::domain::person::{CarryVia, MatchRule};

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
    ("flag_losses_accepted", "承認したフラグ喪失"),
    ("migration_new", "移行: 新規の被保険者"),
    ("migration_changed", "移行: 変更のある被保険者"),
    ("migration_unchanged", "移行: 変更のない被保険者"),
    ("migration_absent", "移行: ソースにない被保険者"),
    ("migration_rejected", "移行: 不備の被保険者"),
    ("migration_unapplied", "移行: 未適用の被保険者"),
    ("inquiries", "年齢到達照会（照会した件数）"),
    ("inquiries_withheld", "照会の回答待ちで保留した登録（重要）"),
    ("inquiry_answers_unused", "使われなかった照会回答"),
];

/// A summary counter's Japanese label. Counters by month (`kouki_transitions_202504`,
/// `upcoming_202701`) name the month; an unlisted counter keeps its key.
pub fn summary_ja(key: &str) -> String {
    if let Some(s) = SUMMARY.iter().find(|s| s.0 == key) {
        return s.1.to_owned();
    }
    let month = |m: &str| match (m.get(..4), m.get(4..6).and_then(|x| x.parse::<u8>().ok())) {
        (Some(y), Some(mm)) if m.len() == 6 && m.bytes().all(|b| b.is_ascii_digit()) => Some(format!("{y}年{mm}月")),
        _ => None,
    };
    if let Some(m) = key.strip_prefix("kouki_transitions_").and_then(month) {
        return format!("後期加入の登録（{m}資格取得）");
    }
    if let Some(m) = key.strip_prefix("upcoming_").and_then(month) {
        return format!("年齢到達予定（{m}）");
    }
    key.to_owned()
}

/// A run status in Japanese (report.json keeps the English value).
pub fn status_ja(status: ReportStatus) -> &'static str {
    match status {
        ReportStatus::Completed => "完了",
        ReportStatus::CompletedWithRejects => "完了（不備あり）",
        ReportStatus::CompletedWithCriticalFindings => "完了（至急の確認あり）",
        ReportStatus::Aborted => "中止（何も反映していません）",
        ReportStatus::Refused => "拒否（何も変更していません）",
        ReportStatus::Rejected => "ソース不備（何も変更していません）",
    }
}

/// A run status in English (secondary text beside [`status_ja`]).
pub fn status_en(status: ReportStatus) -> &'static str {
    match status {
        ReportStatus::Completed => "completed",
        ReportStatus::CompletedWithRejects => "completed with rejects",
        ReportStatus::CompletedWithCriticalFindings => "completed with critical findings",
        ReportStatus::Aborted => "aborted: nothing committed or published",
        ReportStatus::Refused => "refused: nothing changed",
        ReportStatus::Rejected => "source rejected: nothing changed",
    }
}

/// A flag as staff name it: `SelfInfoProvisionProhibited(2)` → `自己情報提供不可（理由2）`,
/// `NonDisclosure` → `不開示該当`; a flag code (`1`–`3`) too. Anything else is kept.
pub fn flag_ja(flag: &str) -> String {
    let (name, reason) = match flag.split_once('(') {
        Some((n, r)) => (n, r.strip_suffix(')').filter(|r| !r.is_empty())),
        None => (flag, None),
    };
    let Some(ja) = FlagType::ALL
        .iter()
        .find(|t| t.name_en() == name || t.code() == name)
        .map(|t| t.name_ja())
    else {
        return flag.to_owned();
    };
    match reason {
        Some(r) => format!("{ja}（理由{r}）"),
        None => ja.to_owned(),
    }
}

/// How a flag changed, in Japanese.
pub fn flag_change_ja(change: FlagChangeKind) -> &'static str {
    match change {
        FlagChangeKind::Set => "設定",
        FlagChangeKind::Released => "解除",
        FlagChangeKind::ReasonChanged => "理由変更",
    }
}

/// A pending flag's operation: 設定 or 解除.
pub fn operation_ja(op: PendingOperation) -> &'static str {
    match op {
        PendingOperation::Set => "設定",
        PendingOperation::Release => "解除",
    }
}

/// How a carry matched (R3).
pub fn match_rule_ja(rule: MatchRule) -> &'static str {
    match rule {
        MatchRule::IndividualNumber => "個人番号で照合",
        MatchRule::ResidentCode => "市町村コード・宛名番号・生年月日で照合",
    }
}

/// Where a carry's 国保 side came from (the two that have no Japanese label show their name).
pub fn carry_via_ja(via: CarryVia) -> &'static str {
    match via {
        CarryVia::Ledger => "台帳",
        CarryVia::Handoff => "年齢到達引継ファイル",
        CarryVia::LedgerAndHandoff | CarryVia::FlagAfterRegistration => via.as_str(),
    }
}

/// An input file's status.
pub fn input_status_ja(status: InputStatus) -> &'static str {
    match status {
        InputStatus::Applied => "適用",
        InputStatus::Skipped => "スキップ（適用済み）",
        InputStatus::Rejected => "不備のため未適用",
    }
}

/// (error code, what it means, what to do) in Japanese: one sentence per code of spec §7.
const ERRORS: &[(&str, &str, &str)] = &[
    (
        "E_ENCODING",
        "文字コードの誤り",
        "ファイルの文字コードが宣言と合いません。ファイル全体を適用していません。送付元に正しい文字コード（UTF-8 または Shift_JIS）での再作成を依頼してください。",
    ),
    (
        "E_XML_SYNTAX",
        "XMLの構文誤り",
        "XMLとして読めません。ファイル全体を適用していません。送付元に再作成を依頼してください。",
    ),
    (
        "E_DTD_FORBIDDEN",
        "DOCTYPEの使用",
        "DOCTYPE（DTD）を含むXMLは受け付けません。DOCTYPEのない形での再作成を依頼してください。",
    ),
    (
        "E_SCHEMA",
        "項目構成の誤り",
        "項目の過不足や順序が仕様と合いません。送付元に仕様（v1.1）どおりの再作成を依頼してください。",
    ),
    (
        "E_FIELD_FORMAT",
        "項目の形式誤り",
        "桁数や文字種が仕様と合いません。該当レコードを修正し、次回の処理で再送してください。",
    ),
    (
        "E_CHECK_DIGIT",
        "検査数字の誤り",
        "保険者番号・個人番号・市町村コードの検査数字が合いません。番号を原本で確認し、修正して再送してください。",
    ),
    (
        "E_DATE",
        "日付の誤り",
        "実在しない日付か、形式（YYYYMMDD）が誤っています。修正して再送してください。",
    ),
    (
        "E_CODE",
        "コード値の誤り",
        "仕様にないコード値です（先頭の0も意味を持ちます）。修正して再送してください。",
    ),
    (
        "E_TRAILER_COUNT",
        "件数の不一致",
        "トレーラの件数と実際の件数が合いません（途中で切れたファイルの可能性があります）。ファイル全体を適用していません。送付元に再送を依頼してください。",
    ),
    (
        "E_SEQUENCE",
        "レコード番号の順序誤り",
        "RecordSequence が昇順になっていません。ファイル全体を適用していません。送付元に再作成を依頼してください。",
    ),
    (
        "E_FILE_ID_REUSED",
        "ファイル識別子の重複",
        "適用済みのファイル識別子で内容の違うファイルが届きました。どちらが正しいか送付元に確認し、新しい識別子での再送を依頼してください。",
    ),
    (
        "E_STATE_CONFLICT",
        "台帳と合わない異動",
        "台帳の状態と合わない異動です（加入していない人の喪失など）。台帳と送付元の資格情報を照合し、正しい順序で再送してください。",
    ),
    (
        "E_DISCLOSURE_CONFLICT",
        "不開示との矛盾",
        "不開示該当の被保険者に「開示」の副本が届いたため登録していません。不開示の扱いを担当者が確認してください。",
    ),
    (
        "E_UNMAPPABLE_CHAR",
        "送信できない文字（外字を含む）",
        "Shift_JISで表せない文字か外字（私用領域の文字）があり、その被保険者を送信していません。文字同定の作業リストで文字を確認して氏名等を直してください（--unmappable replace で●に置き換えて送ることもできます）。",
    ),
    (
        "E_FLAG_WOULD_BE_CLEARED",
        "フラグを消す送信の阻止",
        "設定済みのフラグを0として送るところでした。何も送信していません。至急、保守担当に連絡してください。",
    ),
    (
        "E_STALE_EVENT",
        "古いフラグ解除",
        "台帳の状態より古いフラグ解除のため適用していません。確認の作業リストで、解除が本当に必要か確認してください。",
    ),
];

/// An error code's Japanese name and what to do about it (spec §7); `None` for a code the
/// table does not know.
pub fn error_ja(code: &str) -> Option<(&'static str, &'static str)> {
    ERRORS.iter().find(|e| e.0 == code).map(|e| (e.1, e.2))
}

/// What staff do with a worklist's rows.
const WORKLIST_TODO: &[(&str, &str)] = &[
    (
        "certificate_issuance",
        "資格確認書を交付してください（交付方法は本人と調整）。",
    ),
    (
        "review",
        "一件ずつ確認してください。「critical」の行は保護が欠けている可能性があり、最優先です。",
    ),
    (
        "flag_confirmation",
        "他の保険者で設定されているフラグを、この加入にも設定すべきか確認してください。",
    ),
    (
        "support_measure_expiry",
        "住基支援措置の延長の有無を確認してください（自動では解除しません）。",
    ),
    (
        "character_identification",
        "文字を特定し（文字情報基盤MJ等）、氏名等を修正してください。",
    ),
    (
        "upcoming_transitions",
        "年齢到達引継ファイルを後期高齢者医療広域連合へ送付してください。",
    ),
    (
        "missed",
        "至急、広域連合へ連絡し、後期の資格にフラグが設定されているか確認してください。",
    ),
    (
        "handoff_blocked",
        "引継ファイルに書けなかった人です。内容を確認し、広域連合へ別途連絡してください。",
    ),
    (
        "flag_losses",
        "移行で失われるフラグです。一件ずつ、失ってよいか確認してください。",
    ),
    ("migration_summary", "保険者別の移行件数です。"),
    ("diff", "被保険者ごとの移行差分です。"),
    (
        "inquiry_awaiting",
        "国保側の回答待ちです。国保側に照会ファイルの回答を依頼してください。",
    ),
    ("inquiry_answered", "この実行で回答を受けた照会です。"),
    (
        "inquiry_not_written",
        "照会ファイルに書けなかった登録です。文字を確認して修正してください。",
    ),
];

/// What to do with a worklist, in Japanese, if the table knows it.
pub fn worklist_todo(name: &str) -> Option<&'static str> {
    WORKLIST_TODO.iter().find(|w| w.0 == name).map(|w| w.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_has_a_sentence() {
        use crate::error::ErrorCode::*;
        for c in [
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
            StaleEvent,
        ] {
            assert!(error_ja(c.as_str()).is_some(), "{}", c.as_str());
        }
    }

    #[test]
    fn flags_and_counters_in_japanese() {
        assert_eq!(flag_ja("SelfInfoProvisionProhibited(2)"), "自己情報提供不可（理由2）");
        assert_eq!(flag_ja("NonDisclosure"), "不開示該当");
        assert_eq!(
            summary_ja("kouki_transitions_202504"),
            "後期加入の登録（2025年4月資格取得）"
        );
        assert_eq!(summary_ja("upcoming_202701"), "年齢到達予定（2027年1月）");
        assert_eq!(summary_ja("upcoming_x"), "upcoming_x");
    }
}
