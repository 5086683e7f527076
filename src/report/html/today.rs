//! 今日の対応 (what to do today), the top of the page: the critical items, every worklist with
//! rows (count, what to do, links), the rejects grouped by error code.

use super::{Input, Link, link, xlsx_link};
use crate::report::{Report, ReportStatus, SummaryKey, labels};
use serde::Serialize;

/// A critical item of 今日の対応.
#[derive(Serialize)]
pub(super) struct Item {
    title: String,
    text: String,
    en: String,
    command: Option<String>,
    links: Vec<Link>,
}

#[derive(Serialize)]
pub(super) struct WorklistLink {
    name: String,
    name_ja: String,
    count: u64,
    critical: u64,
    todo: String,
    links: Vec<Link>,
}

#[derive(Serialize)]
pub(super) struct RejectGroup {
    code: String,
    name_ja: String,
    todo: String,
    total: u64,
    critical: u64,
}

/// The sheet of report.xlsx that holds a worklist, by its name.
fn sheet(input: &Input<'_>, name: &str) -> String {
    let title = input.worklists.iter().find(|w| w.name == name).map_or("", |w| w.title);
    labels::worklist_ja(name, title)
}

/// The critical items, in this order: an aborted run, a migration to accept or fix, withheld
/// registrations, each worklist's critical rows, critical rejects.
pub(super) fn critical_items(input: &Input<'_>, migration: Option<&serde_json::Value>) -> Vec<Item> {
    let r = input.report;
    let mut critical = Vec::new();
    if let Some(reason) = &r.abort_reason {
        critical.push(Item {
            title: "処理を中止しました".into(),
            text: "何も反映・送信していません。原因を解消してから再実行してください。".into(),
            en: format!("Aborted: nothing was committed or published. {reason}"),
            command: None,
            links: vec![link("rejects.csv")],
        });
    }
    if let Some(m) = migration {
        critical.extend(migration_item(r, m, input.invocation));
    }
    let withheld = r.summary.count(&SummaryKey::Withheld);
    if withheld > 0 {
        critical.push(Item {
            title: format!("送信を保留した登録 {withheld}件"),
            text: "フラグの保護が確定しないため送信していません（次回以降の実行で自動的に再試行します）。確認の作業リストの「重要」の行を至急確認してください。".into(),
            en: format!("{withheld} registration(s) withheld: not published until the protection is settled (R4, R14)."),
            command: None,
            links: vec![link("review.csv"), xlsx_link(&sheet(input, "review"))],
        });
    }
    for w in input.worklists.iter().filter(|w| w.critical > 0) {
        let (title, text, en) = worklist_item(input, w.name, w.critical);
        critical.push(Item {
            title,
            text,
            en,
            command: None,
            links: vec![link(&format!("{}.csv", w.name)), xlsx_link(&sheet(input, w.name))],
        });
    }
    let rejects_critical: u64 = input.reject_codes.values().map(|t| t.critical).sum();
    if rejects_critical > 0 {
        critical.push(Item {
            title: format!("重要な不備 {rejects_critical}件"),
            text: "フラグ設定・年齢到達引継のレコード、またはファイル全体が受け付けられていません。保護が反映されていない可能性があります。送付元に修正・再送を依頼してください。".into(),
            en: format!("{rejects_critical} critical reject(s): a protection may be missing."),
            command: None,
            links: vec![link("rejects.csv"), xlsx_link(labels::REJECTS_SHEET)],
        });
    }
    critical
}

/// Title, text and English of a worklist's critical rows (`n` of them).
fn worklist_item(input: &Input<'_>, name: &str, n: u64) -> (String, String, String) {
    match name {
        "review" => (
            format!("確認の作業リストに重要な行 {n}件"),
            "保護（フラグ）が欠けている可能性があります。最優先で確認してください。".to_owned(),
            format!("{n} critical review item(s): a protection may be missing."),
        ),
        "missed" => (
            format!("引継漏れ {n}件"),
            "75歳到達日を過ぎても後期の資格にフラグがないか、後期の資格が見つかりません。至急、広域連合へ連絡してください。".to_owned(),
            format!("{n} missed age transition(s): the 後期 enrollment lacks the flags."),
        ),
        "handoff_blocked" => (
            format!("引継ファイルに書けなかった人 {n}件"),
            "年齢到達引継ファイルに入っていません。内容を確認し、広域連合へ別途連絡してください。".to_owned(),
            format!("{n} member(s) could not be written to the hand-off file."),
        ),
        "inquiry_awaiting" => (
            format!("照会の回答待ちで保留した登録 {n}件"),
            "国保側の回答が届くまで送信しません。国保側に照会ファイルの回答を依頼してください。".to_owned(),
            format!("{n} registration(s) withheld awaiting the 国保 answer (R13)."),
        ),
        _ => (
            format!("{}: 重要な行 {n}件", sheet(input, name)),
            labels::worklist_todo(name).unwrap_or_default().to_owned(),
            format!("{n} critical row(s) in {name}."),
        ),
    }
}

/// Every worklist, with rows (`.0`: count, what to do, links) or without (`.1`: its Japanese
/// name): the worklists with rows in the report first, then those it only counts.
pub(super) fn worklist_links(input: &Input<'_>) -> (Vec<WorklistLink>, Vec<String>) {
    let r = input.report;
    let head = |name: &str| input.worklists.iter().find(|w| w.name == name);
    let count = |name: &str| -> u64 {
        r.worklists
            .get(name)
            .map(|n| *n as u64)
            .or_else(|| head(name).map(|w| w.rows.total))
            .unwrap_or(0)
    };
    let mut names: Vec<(String, String)> = input
        .worklists
        .iter()
        .map(|w| (w.name.to_owned(), w.title.to_owned()))
        .collect();
    for name in r.worklists.keys() {
        if !names.iter().any(|(n, _)| n == name) {
            names.push((name.clone(), String::new()));
        }
    }
    let mut todo = Vec::new();
    let mut empty = Vec::new();
    for (name, title) in &names {
        let n = count(name);
        let name_ja = labels::worklist_ja(name, title);
        if n == 0 {
            empty.push(name_ja);
            continue;
        }
        let mut links = vec![link(&format!("{name}.csv"))];
        if head(name).is_some() {
            links.push(xlsx_link(&name_ja));
        }
        todo.push(WorklistLink {
            name: name.clone(),
            critical: head(name).map_or(0, |w| w.critical),
            todo: labels::worklist_todo(name).unwrap_or_default().to_owned(),
            name_ja,
            count: n,
            links,
        });
    }
    (todo, empty)
}

/// The rejects by error code, each with what to do about it.
pub(super) fn reject_groups(input: &Input<'_>) -> Vec<RejectGroup> {
    input
        .reject_codes
        .iter()
        .map(|(code, t)| {
            let (name_ja, todo) = labels::error_ja(code).unwrap_or(("", ""));
            RejectGroup {
                code: code.clone(),
                name_ja: name_ja.to_owned(),
                todo: todo.to_owned(),
                total: t.total,
                critical: t.critical,
            }
        })
        .collect()
}

/// A refused migration (or a dry run a real run would refuse): the exact command that accepts
/// this flag-loss list. An accepted list is said too (not critical, but the decision is there).
fn migration_item(r: &Report, m: &serde_json::Value, invocation: &[String]) -> Option<Item> {
    let b = |k: &str| m.get(k).and_then(serde_json::Value::as_bool) == Some(true);
    let losses = m.get("flag_losses").and_then(serde_json::Value::as_u64).unwrap_or(0);
    let sha = m
        .get("flag_loss_list_sha256")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let given = m.get("accept_flag_losses").and_then(serde_json::Value::as_str);
    let links = vec![
        link("flag_losses.csv"),
        xlsx_link(&labels::worklist_ja("flag_losses", "")),
    ];
    if r.status == ReportStatus::Rejected {
        return Some(Item {
            title: "移行元ファイルに不備があり、何も変更していません".into(),
            text: "不備一覧を確認し、移行元ファイルを直してから再実行してください。".into(),
            en: "Source rejected: nothing changed.".into(),
            command: None,
            links: vec![link("rejects.csv")],
        });
    }
    let refused = b("refused") || r.status == ReportStatus::Refused;
    let would = b("would_be_refused");
    if !(refused || would) {
        return None;
    }
    let what = if refused {
        "移行を拒否しました。台帳は変更せず、何も送信していません。".to_owned()
    } else {
        "ドライランです。このまま本実行すると拒否されます（台帳は変更していません）。".to_owned()
    };
    let mismatch = match given {
        Some(g) if g != sha => {
            format!("指定された --accept-flag-losses {g} は、この移行元のフラグ喪失一覧のSHA-256と違います。")
        }
        _ => String::new(),
    };
    Some(Item {
        title: format!("フラグ喪失 {losses}件: 移行は承認が必要です"),
        text: format!(
            "{what}{mismatch}flag_losses.csv の全件を確認し、失ってよいと判断した場合に限り、次のコマンドで承認して実行してください（理由を記入）。一覧が変わると承認は無効になります。"
        ),
        en: format!(
            "{} {losses} flag loss(es), list SHA-256 {sha}. Only if every loss is intended, accept exactly this list:",
            if refused {
                "Refused: nothing changed."
            } else {
                "Dry run: a real run would be refused."
            }
        ),
        command: Some(accept_command(invocation, sha)),
        links,
    })
}

/// The command line that wrote the report with `--dry-run`, `--accept-flag-losses` and
/// `--reason` taken out, then `--accept-flag-losses <sha> --reason '…'`: the command that
/// accepts exactly this list.
pub fn accept_command(invocation: &[String], sha: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut args = invocation.iter();
    match args.next() {
        Some(prog) => out.push(prog.clone()),
        None => out.extend(["nhi-linkage".to_owned(), "migrate".to_owned(), "…".to_owned()]),
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dry-run" => {}
            "--accept-flag-losses" | "--reason" => {
                args.next();
            }
            _ if a.starts_with("--accept-flag-losses=") || a.starts_with("--reason=") => {}
            _ => out.push(a.clone()),
        }
    }
    let mut cmd: Vec<String> = out.iter().map(|a| shell_quote(a)).collect();
    cmd.push("--accept-flag-losses".into());
    cmd.push(sha.to_owned());
    cmd.push("--reason".into());
    cmd.push("'（承認の理由）'".into());
    cmd.join(" ")
}

/// An argument as a POSIX shell reads it back: as it is when it holds only safe characters,
/// else in single quotes.
fn shell_quote(a: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:@%+,…".contains(c);
    if !a.is_empty() && a.chars().all(safe) {
        a.to_owned()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}
