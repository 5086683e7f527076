//! report.html (issue 15): one page per command that begins with 今日の対応 (critical items
//! first, worklists with links, rejects by error code), a title per command, Japanese labels
//! instead of internal counter names and Rust Debug names, and a refused migration that shows
//! the exact command accepting its flag losses.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn report_dir(o: &Output) -> PathBuf {
    let s = String::from_utf8_lossy(&o.stdout);
    let line = s
        .lines()
        .find_map(|l| l.strip_prefix("report:  "))
        .unwrap_or_else(|| panic!("report line\n{}", text(o)));
    PathBuf::from(line).parent().unwrap().to_path_buf()
}

fn html(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("report.html")).unwrap()
}

fn json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// What every page must hold: its title, 今日の対応 before any count, no summary counter's key,
/// no Debug-formatted flag, no English status value.
fn check_page(dir: &Path, title: &str) -> String {
    let page = html(dir);
    let j = json(dir);
    let at = |s: &str| {
        page.find(s)
            .unwrap_or_else(|| panic!("{s:?} missing in {}", dir.display()))
    };
    assert!(page.contains(&format!("<h1>{title} ")), "title {title}");
    let today = at("今日の対応");
    assert!(today < at("実行の記録"), "今日の対応 before the run's facts");
    assert!(today < at("件数"), "今日の対応 before any count");
    // internal snake_case counter names, as words (a file name such as flag_losses.csv is fine)
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    for key in j["summary"].as_object().unwrap().keys().filter(|k| k.contains('_')) {
        for (i, _) in page.match_indices(key.as_str()) {
            let (before, after) = (page[..i].chars().next_back(), page[i + key.len()..].chars().next());
            assert!(word(before) || word(after), "internal counter name {key} in the page");
        }
    }
    for debug in [
        "SelfInfoProvisionProhibited",
        "NonDisclosure",
        "AutoResponseProhibited",
        "Some(",
        "None",
        "completed_with",
    ] {
        assert!(!page.contains(debug), "{debug} in {}", dir.display());
    }
    assert!(page.contains(
        "\"Yu Gothic\",YuGothic,Meiryo,\"Hiragino Sans\",\"Hiragino Kaku Gothic ProN\",\"Noto Sans CJK JP\",sans-serif"
    ));
    // every relative link names a file of the report folder
    for href in page.split("href=\"").skip(1).map(|s| &s[..s.find('"').unwrap()]) {
        assert!(dir.join(href).is_file(), "link {href} in {}", dir.display());
    }
    page
}

fn run_samples(root: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["run", "--as-of", "20261201", "--inbox"])
        .arg(samples().join("inbox"))
        .arg("--ledger")
        .arg(root.join("ledger.sqlite"))
        .arg("--outbox")
        .arg(root.join("outbox"))
        .arg("--reports")
        .arg(root.join("reports"))
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn run_and_extract_pages_begin_with_what_to_do_today() {
    let site = Site::new();
    let root = site.dir.path();
    let o = run_samples(root, &["--init-ledger", "--dry-run"]);
    let dir = report_dir(&o);
    let page = check_page(&dir, "夜間処理レポート（ドライラン）");
    assert!(page.contains("ドライラン"), "{}", text(&o));

    let o = run_samples(root, &["--init-ledger"]);
    let dir = report_dir(&o);
    let j = json(&dir);
    let page = check_page(&dir, "夜間処理レポート");
    // every non-empty worklist is listed with its count and a link to its CSV
    let worklists = j["worklists"].as_object().unwrap();
    assert!(worklists.values().any(|n| n.as_u64() > Some(0)), "{j}");
    for (name, n) in worklists {
        let n = n.as_u64().unwrap();
        if n > 0 {
            let link = format!("<a href=\"{name}.csv\">");
            assert!(page.contains(&link), "{name}");
            assert!(
                page.find(&link).unwrap() < page.find("実行の記録").unwrap(),
                "{name} in 今日の対応"
            );
        }
    }
    // flags named as staff name them
    assert!(
        page.contains("自己情報提供不可（理由2）"),
        "the carries' flags in Japanese"
    );
    assert!(page.contains("不開示該当"));

    // a night with rejects: grouped by code with what to do
    let bad = Site::new();
    std::fs::create_dir_all(bad.inbox()).unwrap();
    for e in std::fs::read_dir(samples().join("inbox")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, bad.inbox().join(p.file_name().unwrap())).unwrap();
    }
    let flag = samples().join("inbox/FlagChange_00131045_0342.xml");
    let xml = std::fs::read(&flag).unwrap();
    // a truncated FlagChange file: rejected whole, critical
    std::fs::write(bad.inbox().join("FlagChange_zz_truncated.xml"), &xml[..xml.len() / 2]).unwrap();
    let o = bad.run(&[]);
    let dir = report_dir(&o);
    let page = check_page(&dir, "夜間処理レポート");
    let j = json(&dir);
    let code = j["rejects"][0]["code"].as_str().unwrap().to_owned();
    assert_eq!(j["rejects"][0]["critical"], true, "{j}");
    let critical = page.find("重要な不備").expect("critical rejects in 今日の対応");
    let worklists = page.find("<h3>作業リスト").expect("worklists");
    assert!(critical < worklists, "critical items first");
    let group = page
        .find(&format!("<td><code>{code}</code></td>"))
        .expect("a row per code");
    assert!(group < page.find("実行の記録").unwrap());
    assert!(page[group..].contains("再"), "what to do: a sentence per code");

    // extract on the same ledger: its own title, its worklists
    let o = Command::new(BIN)
        .args(["age-transition", "extract", "--as-of", "20261201", "--ledger"])
        .arg(root.join("ledger.sqlite"))
        .arg("--out")
        .arg(root.join("handoff"))
        .arg("--reports")
        .arg(root.join("reports"))
        .output()
        .unwrap();
    let dir = report_dir(&o);
    let page = check_page(&dir, "75歳到達抽出レポート");
    assert!(page.contains("<a href=\"upcoming_transitions.csv\">"), "{}", text(&o));
    assert!(page.contains("<td>設定（理由2）</td>"), "hand-off flag values in words");
    assert!(!page.contains("夜間処理レポート"));
}

/// Issue 15: dry runs of one source against two ledgers write two report folders (the
/// migration's run id includes the ledger's identity); diff.csv has a BOM like the other CSVs.
#[test]
fn migration_dry_runs_of_two_ledgers_do_not_collide_and_diff_csv_has_a_bom() {
    let site = Site::new();
    let legacy = samples().join("legacy");
    let dry = |ledger: &str| {
        let o = Command::new(BIN)
            .args(["migrate", "--dry-run", "--as-of", "20261201", "--from"])
            .arg(legacy.join("kokuho_export.csv"))
            .arg("--mapping")
            .arg(legacy.join("mapping.toml"))
            .arg("--ledger")
            .arg(site.p(ledger))
            .arg("--reports")
            .arg(site.p("reports"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        report_dir(&o)
    };
    let (a, b) = (dry("a.sqlite"), dry("b.sqlite"));
    assert_ne!(a, b, "one folder per ledger");
    assert!(a.is_dir() && b.is_dir());
    assert_eq!(dry("a.sqlite"), a, "the same ledger and source: the same folder");
    let diff = std::fs::read(a.join("diff.csv")).unwrap();
    assert!(
        diff.starts_with("\u{feff}insurer,".as_bytes()),
        "BOM, then the header row"
    );
    check_page(&a, "移行レポート（ドライラン）");
}
