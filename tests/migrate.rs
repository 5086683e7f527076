//! `nhi-linkage migrate` end to end, driving the real binary.
//!
//! `samples/legacy/kokuho_export.csv` is a golden file rendered here from [`sample_rows`]
//! (Shift_JIS, Japanese column names, 和暦 dates, full-width kana); `NHI_BLESS=1 cargo test --test
//! migrate` rewrites it.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const HEAD: [&str; 20] = [
    "被保険者枝番",
    "記号",
    "番号",
    "枝番",
    "個人番号",
    "宛名番号",
    "氏名",
    "カナ氏名",
    "性別",
    "生年月日",
    "資格取得日",
    "取得事由",
    "資格喪失日",
    "喪失事由",
    "本人家族",
    "郵便番号",
    "住所",
    "自己情報提供不可",
    "不開示該当",
    "自動応答不可",
];

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/legacy")
}

/// The sample export: five 国保 members of 00131045 (municipality 131041).
fn sample_rows() -> Vec<Vec<String>> {
    let r = |v: [&str; 20]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let mn = |n: u64| my_number(n);
    vec![
        // DV-protected: 自己情報提供不可 (本人都合) and 不開示該当
        r([
            &key(101),
            "国保",
            "1001",
            "00",
            &mn(101),
            "100101",
            "山田　花子",
            "ヤマダ　ハナコ",
            "女",
            "昭和２６年１２月２日",
            "4310401",
            "転入",
            "",
            "",
            "本人",
            "160-0023",
            "東京都新宿区西新宿一丁目１番１号",
            "本人都合",
            "有",
            "無",
        ]),
        r([
            &key(102),
            "国保",
            "1002",
            "00",
            &mn(102),
            "100102",
            "佐藤　一郎",
            "サトウ　イチロウ",
            "男",
            "昭和３５年４月１日",
            "5010501",
            "その他",
            "",
            "",
            "本人",
            "1600022",
            "東京都新宿区新宿二丁目２番２号",
            "無",
            "無",
            "無",
        ]),
        // 平成元年1月8日 (first day of 平成); lost in R06 (他保険加入)
        r([
            &key(103),
            "",
            "1003",
            "01",
            "",
            "100103",
            "鈴木　次郎",
            "スズキ　ジロウ",
            "男",
            "平成元年１月８日",
            "5040401",
            "他保険喪失",
            "R06.03.31",
            "他保険加入",
            "本人",
            "",
            "",
            "無",
            "無",
            "無",
        ]),
        // 昭和64年1月7日 (last day of 昭和); 不開示該当 and 自動応答不可
        r([
            &key(104),
            "国保",
            "1004",
            "02",
            &mn(104),
            "100104",
            "高橋　美咲",
            "タカハシ　ミサキ",
            "女",
            "昭和６４年１月７日",
            "4300401",
            "転入",
            "",
            "",
            "家族",
            "1600023",
            "東京都新宿区西新宿三丁目３番３号",
            "無",
            "有",
            "有",
        ]),
        r([
            &key(105),
            "国保",
            "1004",
            "03",
            "",
            "100105",
            "高橋　蓮",
            "タカハシ　レン",
            "男",
            "令和元年５月１日",
            "5010501",
            "その他",
            "",
            "",
            "家族",
            "1600023",
            "東京都新宿区西新宿三丁目３番３号",
            "無",
            "無",
            "無",
        ]),
    ]
}

fn render(rows: &[Vec<String>]) -> Vec<u8> {
    let mut s = HEAD.join(",");
    s.push_str("\r\n");
    for r in rows {
        s.push_str(&r.join(","));
        s.push_str("\r\n");
    }
    let (b, _, unmappable) = encoding_rs::SHIFT_JIS.encode(&s);
    assert!(!unmappable);
    b.into_owned()
}

#[test]
fn sample_export_is_current() {
    let bytes = render(&sample_rows());
    let p = samples().join("kokuho_export.csv");
    if std::env::var("NHI_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&p, &bytes).unwrap();
        return;
    }
    assert!(
        std::fs::read(&p).unwrap() == bytes,
        "{} is stale: NHI_BLESS=1 cargo test --test migrate",
        p.display()
    );
}

struct Mig {
    site: Site,
}

impl Mig {
    fn new() -> Mig {
        Mig { site: Site::new() }
    }
    fn ledger(&self) -> PathBuf {
        self.site.p("ledger.sqlite")
    }
    /// Runs `migrate` with the given source and extra args; reports under `reports/`.
    fn migrate(&self, from: &Path, extra: &[&str]) -> Output {
        self.migrate_env(from, extra, &[])
    }
    /// Like [`Mig::migrate`], with environment variables set (`Some`) or removed (`None`).
    fn migrate_env(&self, from: &Path, extra: &[&str], env: &[(&str, Option<&str>)]) -> Output {
        let mut c = Command::new(BIN);
        for (k, v) in env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.arg("migrate");
        if !self.ledger().exists() {
            c.arg("--init-ledger"); // a first migration creates the ledger
        }
        let out = c
            .arg("--ledger")
            .arg(self.ledger())
            .arg("--from")
            .arg(from)
            .arg("--reports")
            .arg(self.site.p("reports"))
            .arg("--outbox")
            .arg(self.site.p("outbox"))
            .args(["--as-of", "20261201"])
            .args(extra)
            .output()
            .unwrap();
        eprintln!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
    fn legacy(&self, from: &Path, extra: &[&str]) -> Output {
        self.legacy_env(from, extra, &[])
    }
    fn legacy_env(&self, from: &Path, extra: &[&str], env: &[(&str, Option<&str>)]) -> Output {
        let mapping = samples().join("mapping.toml");
        let mut args = vec!["--mapping", mapping.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.migrate_env(from, &args, env)
    }
}

/// The flag-loss list's SHA-256 as a migration printed it; checks that the report states the same
/// and that it is the SHA-256 of the report's flag_losses.csv.
fn loss_list_sha(out: &Output, dir: &Path) -> String {
    use sha2::Digest;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let printed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("flag-loss list: "))
        .and_then(|l| l.rsplit_once("SHA-256 "))
        .map(|(_, h)| h.trim().to_owned())
        .expect("the flag-loss list's SHA-256 on the console");
    assert_eq!(json(dir)["migration"]["flag_loss_list_sha256"], printed.as_str());
    let file = std::fs::read(dir.join("flag_losses.csv")).unwrap();
    let sha: String = sha2::Sha256::digest(&file).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sha, printed, "the SHA-256 of flag_losses.csv");
    assert!(
        std::fs::read_to_string(dir.join("report.html"))
            .unwrap()
            .contains(&printed)
    );
    printed
}

fn report_dir(out: &Output) -> PathBuf {
    let s = String::from_utf8_lossy(&out.stdout);
    let line = s
        .lines()
        .find_map(|l| l.strip_prefix("report:  "))
        .expect("report line");
    PathBuf::from(line).parent().unwrap().to_path_buf()
}

fn json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

fn csv_rows(p: &Path) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new().has_headers(true).from_path(p).unwrap();
    r.records()
        .map(|x| x.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

fn ledger_flags(ledger: &Path, k: &str) -> Vec<String> {
    let c = rusqlite::Connection::open(ledger).unwrap();
    let mut st = c
        .prepare("SELECT flag_type FROM flag WHERE subscriber_key = ?1 AND info_code = '' ORDER BY flag_type")
        .unwrap();
    st.query_map([k], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

fn ledger_name(ledger: &Path, k: &str) -> String {
    let c = rusqlite::Connection::open(ledger).unwrap();
    c.query_row("SELECT name FROM enrollment WHERE subscriber_key = ?1", [k], |r| {
        r.get(0)
    })
    .unwrap()
}

/// No My Number, address or postal code of the samples in any report file.
fn assert_private(dir: &Path) {
    let rows = sample_rows();
    for (name, bytes) in files_under(dir) {
        let text = String::from_utf8_lossy(&bytes);
        for r in &rows {
            for (i, v) in [(4, &r[4]), (15, &r[15]), (16, &r[16])] {
                if !v.is_empty() {
                    assert!(!text.contains(v.as_str()), "{name} holds column {i} of a subscriber");
                }
            }
        }
        assert!(
            !text.contains("1600023") && !text.contains("160-0022"),
            "{name} holds a postal code"
        );
    }
}

#[test]
fn legacy_sample_into_an_empty_ledger() {
    let m = Mig::new();
    let out = m.legacy(&samples().join("kokuho_export.csv"), &[]);
    assert_eq!(out.status.code(), Some(0));
    let dir = report_dir(&out);
    let j = json(&dir);
    assert_eq!(j["migration"]["counts"]["new"], 5);
    assert_eq!(j["migration"]["flag_losses"], 0);
    assert_eq!(j["summary"]["flags_to_set"], 4);
    for f in [
        "report.json",
        "report.html",
        "diff.csv",
        "flag_losses.csv",
        "rejects.csv",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("subscribers by change kind"));
    let diff = csv_rows(&dir.join("diff.csv"));
    assert_eq!(diff.len(), 5);
    assert!(diff.iter().all(|r| r[2] == "new"));
    assert_eq!(ledger_flags(&m.ledger(), &key(101)), ["2", "3"]);
    assert_eq!(ledger_flags(&m.ledger(), &key(104)), ["1", "2"]);
    // kana normalised, 和暦 converted
    let c = rusqlite::Connection::open(m.ledger()).unwrap();
    let (kana, birth): (String, String) = c
        .query_row(
            "SELECT name_kana, birthdate FROM enrollment WHERE subscriber_key = ?1",
            [key(103)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((kana.as_str(), birth.as_str()), ("ｽｽﾞｷ ｼﾞﾛｳ", "19890108"));
    let status: String = c
        .query_row(
            "SELECT status FROM enrollment WHERE subscriber_key = ?1",
            [key(103)],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "lost");
    // linkage files published like `run`: flags stated in the 02 rows
    let files = m.site.outbox_files();
    let (_, linkage) = files
        .iter()
        .find(|(n, _)| n.contains("SubscriberLinkage_00131045"))
        .expect("linkage");
    let text = text_of(linkage);
    assert_eq!(
        control_of(&text, &key(101)).unwrap(),
        ("2".into(), "1".into(), "0".into())
    );
    assert!(files.keys().any(|n| n.ends_with("MANIFEST.json")));
    assert_private(&m.site.p("reports"));
    // the same export again: nothing to do
    let out = m.legacy(&samples().join("kokuho_export.csv"), &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&report_dir(&out))["migration"]["counts"]["unchanged"], 5);
}

/// The sample with subscriber 101's 不開示該当 dropped and 102's name changed.
fn second_export(dir: &Path) -> PathBuf {
    let mut rows = sample_rows();
    rows[0][18] = "無".into();
    rows[1][6] = "佐藤　一朗".into();
    let p = dir.join("kokuho_export_2.csv");
    std::fs::write(&p, render(&rows)).unwrap();
    p
}

/// report.html of a refused migration (or of a dry run a real run would refuse): its title, the
/// refusal first in 今日の対応 with the command that accepts exactly this list (the same
/// command line without `--dry-run`), and never "no flag changed" above the loss.
fn assert_accept_command(dir: &Path, title: &str, list: &str, source: &Path) {
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains(&format!("<h1>{title} ")), "{title}");
    let today = html.find("今日の対応").unwrap();
    let cmd_at = html.find("<pre class=\"cmd\">").expect("the accept command");
    assert!(today < cmd_at && cmd_at < html.find("実行の記録").unwrap());
    let cmd = &html[cmd_at..];
    let cmd = &cmd[..cmd.find("</pre>").unwrap()];
    assert!(cmd.contains(&format!("--accept-flag-losses {list} --reason ")), "{cmd}");
    assert!(
        cmd.contains(" migrate ") && cmd.contains(&source.display().to_string()),
        "{cmd}"
    );
    assert!(!cmd.contains("--dry-run"), "{cmd}");
    assert!(html.contains("フラグ喪失 1件"));
    assert!(!html.contains("No flag changed") && !html.contains("フラグ変更（0"));
    assert!(!html.contains("NonDisclosure"), "flags in Japanese");
    assert!(!html.contains("migration_new"), "counters under Japanese labels");
}

#[test]
fn second_migration_shows_exactly_the_dropped_flag_and_the_name_and_refuses_without_acceptance() {
    let m = Mig::new();
    assert_eq!(
        m.legacy(&samples().join("kokuho_export.csv"), &[]).status.code(),
        Some(0)
    );
    let second = second_export(m.site.dir.path());

    // dry run first: ledger byte-identical, full report
    let wal = m.site.p("ledger.sqlite-wal");
    let before = (std::fs::read(m.ledger()).unwrap(), std::fs::read(&wal).ok());
    let out = m.legacy(&second, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(5), "a real run would be refused");
    assert_eq!((std::fs::read(m.ledger()).unwrap(), std::fs::read(&wal).ok()), before);
    let dir = report_dir(&out);
    assert!(dir.to_string_lossy().ends_with("-dry-run"));
    let j = json(&dir);
    assert_eq!(j["dry_run"], true);
    assert_eq!(j["migration"]["would_be_refused"], true);
    let diff = csv_rows(&dir.join("diff.csv"));
    let changed: Vec<_> = diff.iter().filter(|r| r[2] != "unchanged").collect();
    assert_eq!(changed.len(), 2, "{diff:?}");
    assert_eq!(
        (changed[0][1].as_str(), changed[0][3].as_str(), changed[0][5].as_str()),
        // a cell beginning with '-' is written with a leading "'" (never a spreadsheet formula)
        (key(101).as_str(), "", "'-NonDisclosure")
    );
    assert_eq!(
        (changed[1][1].as_str(), changed[1][3].as_str(), changed[1][5].as_str()),
        (key(102).as_str(), "Name", "")
    );
    let losses = csv_rows(&dir.join("flag_losses.csv"));
    assert_eq!(losses.len(), 1);
    assert_eq!(
        (losses[0][0].as_str(), losses[0][1].as_str(), losses[0][2].as_str()),
        ("00131045", key(101).as_str(), "NonDisclosure")
    );
    let list = loss_list_sha(&out, &dir);
    assert_eq!(
        list, "756200a9876a64aeacd8bf7016e31342522642b61de4ba7f344a897c9071b697",
        "README's migrate walk-through shows this list's hash"
    );
    assert_private(&dir);
    assert_accept_command(&dir, "移行レポート（ドライラン・このままでは拒否）", &list, &second);

    // a real run without the option: refused, nothing changed
    let before = std::fs::read(m.ledger()).unwrap();
    let out = m.legacy(&second, &[]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("--accept-flag-losses {list}")));
    let dir = report_dir(&out);
    assert_accept_command(&dir, "移行レポート（拒否）", &list, &second);
    let j = json(&dir);
    assert_eq!(j["status"], "refused");
    assert_eq!(j["migration"]["refused"], true);
    assert_eq!(csv_rows(&dir.join("flag_losses.csv")).len(), 1);
    assert_eq!(std::fs::read(m.ledger()).unwrap(), before);
    assert_eq!(ledger_flags(&m.ledger(), &key(101)), ["2", "3"]);
    // another list is refused too
    let other = "0".repeat(64);
    assert_eq!(
        m.legacy(&second, &["--accept-flag-losses", &other, "--reason", "x"])
            .status
            .code(),
        Some(5)
    );
    assert_eq!(ledger_name(&m.ledger(), &key(102)), "佐藤　一郎");

    // accepted: committed, the choice recorded
    let out = m.legacy(
        &second,
        &["--accept-flag-losses", &list, "--reason", "本人申出により解除"],
    );
    assert_eq!(out.status.code(), Some(0));
    let j = json(&report_dir(&out));
    assert_eq!(j["migration"]["flag_losses_accepted"], true);
    assert_eq!(j["migration"]["operator"]["reason"], "本人申出により解除");
    assert_eq!(j["summary"]["flag_losses_accepted"], 1);
    assert_eq!(ledger_flags(&m.ledger(), &key(101)), ["3"]);
    assert_eq!(ledger_name(&m.ledger(), &key(102)), "佐藤　一朗");
    assert_private(&m.site.p("reports"));
}

#[test]
fn wareki_edge_cases_are_rejected_records() {
    let m = Mig::new();
    let mut rows = sample_rows();
    rows[1][9] = "昭和６４年１月８日".into();
    rows[4][9] = "平成３１年５月１日".into();
    let p = m.site.p("edge.csv");
    std::fs::write(&p, render(&rows)).unwrap();
    let out = m.legacy(&p, &[]);
    assert_eq!(out.status.code(), Some(1));
    let dir = report_dir(&out);
    let rejects = csv_rows(&dir.join("rejects.csv"));
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    for (r, line) in rejects.iter().zip(["3", "6"]) {
        assert_eq!(
            (r[2].as_str(), r[3].as_str(), r[4].as_str()),
            (line, "Birthdate", "E_DATE")
        );
    }
    let j = json(&dir);
    assert_eq!(j["migration"]["counts"]["new"], 3);
    assert_eq!(j["migration"]["counts"]["rejected"], 2);
}

#[test]
fn snapshots_in_each_format_and_encoding_migrate() {
    for (format, enc) in [
        ("csv", "utf-8"),
        ("csv", "shift_jis"),
        ("xml", "utf-8"),
        ("xml", "shift_jis"),
    ] {
        // the server's view: what the legacy migration published
        let src = Mig::new();
        let out = src.legacy(
            &samples().join("kokuho_export.csv"),
            &["--output-format", format, "--output-encoding", enc],
        );
        assert_eq!(out.status.code(), Some(0));
        let files = src.site.outbox_files();
        let (name, bytes) = files.iter().find(|(n, _)| n.contains("SubscriberLinkage_")).unwrap();
        let snap = src.site.p(name.rsplit('/').next().unwrap());
        std::fs::write(&snap, bytes).unwrap();

        // into an empty ledger
        let m = Mig::new();
        let out = m.migrate(&snap, &["--municipality", MUNI]);
        assert_eq!(out.status.code(), Some(0), "{format} {enc}");
        let j = json(&report_dir(&out));
        assert_eq!(j["migration"]["counts"]["new"], 5, "{format} {enc}");
        assert_eq!(j["inputs"][0]["format"], format);
        assert_eq!(ledger_flags(&m.ledger(), &key(101)), ["2", "3"]);
        // and back against the ledger it came from: nothing differs
        let out = src.migrate(&snap, &[]);
        assert_eq!(out.status.code(), Some(0));
        let j = json(&report_dir(&out));
        assert_eq!(j["migration"]["counts"]["unchanged"], 5, "{format} {enc}");
        assert_eq!(j["migration"]["flag_losses"], 0);

        if format == "xml" && enc == "utf-8" {
            // malformed XML: rejected whole with a clear code, nothing changed
            let text = String::from_utf8(bytes.clone()).unwrap();
            let bad = m.site.p("bad.xml");
            std::fs::write(&bad, text.replacen("</NameKana>", "</NameKan>", 1)).unwrap();
            let before = std::fs::read(m.ledger()).unwrap();
            let out = m.migrate(&bad, &[]);
            assert_eq!(out.status.code(), Some(1));
            let dir = report_dir(&out);
            let rejects = csv_rows(&dir.join("rejects.csv"));
            assert_eq!(rejects[0][4], "E_XML_SYNTAX");
            assert_eq!(json(&dir)["status"], "rejected");
            assert_eq!(std::fs::read(m.ledger()).unwrap(), before);
        }
    }
}

#[test]
fn subscribers_absent_from_the_source_are_flag_losses_and_kept() {
    let m = Mig::new();
    assert_eq!(
        m.legacy(&samples().join("kokuho_export.csv"), &[]).status.code(),
        Some(0)
    );
    let rows: Vec<Vec<String>> = sample_rows().into_iter().skip(1).collect();
    let p = m.site.p("partial.csv");
    std::fs::write(&p, render(&rows)).unwrap();
    let out = m.legacy(&p, &[]);
    assert_eq!(out.status.code(), Some(5));
    let dir = report_dir(&out);
    let losses = csv_rows(&dir.join("flag_losses.csv"));
    assert_eq!(losses.len(), 2, "one loss per flag: {losses:?}");
    assert!(losses.iter().all(|l| l[5].starts_with("absent")));
    let list = loss_list_sha(&out, &dir);
    let out = m.legacy(&p, &["--accept-flag-losses", &list, "--reason", "転出済み"]);
    assert_eq!(out.status.code(), Some(0));
    // never cancelled, flags kept
    assert_eq!(ledger_flags(&m.ledger(), &key(101)), ["2", "3"]);
    assert_eq!(json(&report_dir(&out))["migration"]["counts"]["absent"], 1);
}

#[test]
fn dry_run_into_a_missing_ledger_creates_nothing() {
    let m = Mig::new();
    let out = m.legacy(&samples().join("kokuho_export.csv"), &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!m.ledger().exists());
    assert_eq!(json(&report_dir(&out))["migration"]["counts"]["new"], 5);
    assert!(m.site.outbox_files().is_empty());
}

/// Issue #5 item 6: the differences of a large source are spooled and applied chunk by chunk.
/// With a chunk of 2 records (the sample's 5 subscribers spill to disk), the ledger, outbox and
/// report are the same as in memory, and no spill folder is left.
#[test]
fn chunked_migration_equals_in_memory_migration() {
    let dump = |ledger: &Path| -> Vec<String> {
        let c = rusqlite::Connection::open(ledger).unwrap();
        let mut out = Vec::new();
        for t in ["enrollment", "period", "flag"] {
            let mut st = c.prepare(&format!("SELECT * FROM {t} ORDER BY 1, 2, 3")).unwrap();
            let n = st.column_count();
            let rows = st
                .query_map([], |r| {
                    Ok((0..n)
                        .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .unwrap();
            out.extend(rows.map(Result::unwrap));
        }
        out
    };
    let mut results = Vec::new();
    // one ledger path for both (the run id includes the ledger's identity), emptied in between
    let m = Mig::new();
    for extra in [&[][..], &["--chunk-records", "2"][..]] {
        for e in std::fs::read_dir(m.site.dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
        let out = m.legacy(&samples().join("kokuho_export.csv"), extra);
        assert_eq!(out.status.code(), Some(0));
        let mut j = json(&report_dir(&out));
        j["migration"]["read_seconds"] = serde_json::Value::Null;
        // wall-clock times of the run
        j["started_at"] = serde_json::Value::Null;
        j["finished_at"] = serde_json::Value::Null;
        let spill_left = std::fs::read_dir(m.site.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with(".nhi-spill-"));
        assert!(!spill_left, "spill folder left behind");
        results.push((dump(&m.ledger()), m.site.outbox_files(), j));
    }
    assert!(!results[0].0.is_empty());
    assert_eq!(results[0], results[1]);
}

type MakeSource = Box<dyn Fn(bool) -> PathBuf>;
type RunMigrate<'a> = Box<dyn Fn(&Path, &[&str], &[(&str, Option<&str>)]) -> Output + 'a>;

/// Issue 12 item 13: the flag-loss gate binds a list, not a count. A dry run shows 1 loss (不開示該当
/// of 101); a second source drops both of 101's flags: the first list's hash is refused (naming
/// both hashes), a count is no longer accepted, acceptance needs a reason, and the accepted run
/// records who accepted what and why. Legacy CSV and a SubscriberLinkage snapshot in XML.
#[test]
fn flag_loss_gate_accepts_exactly_the_list_the_dry_run_showed() {
    for syntax in ["legacy csv", "snapshot xml"] {
        let m = Mig::new();
        // the ledger holds 101 with 自己情報提供不可 and 不開示該当; `variant(drop_self_info)` is a
        // source without 101's 不開示該当 (and without its 自己情報提供不可 too)
        let (variant, run): (MakeSource, RunMigrate) = if syntax == "legacy csv" {
            assert_eq!(
                m.legacy(&samples().join("kokuho_export.csv"), &[]).status.code(),
                Some(0)
            );
            let dir = m.site.dir.path().to_path_buf();
            (
                Box::new(move |both| {
                    let mut rows = sample_rows();
                    rows[0][18] = "無".into();
                    if both {
                        rows[0][17] = String::new();
                    }
                    let p = dir.join(format!("export_{both}.csv"));
                    std::fs::write(&p, render(&rows)).unwrap();
                    p
                }),
                Box::new(|from, extra, env| m.legacy_env(from, extra, env)),
            )
        } else {
            let out = m.legacy(
                &samples().join("kokuho_export.csv"),
                &["--output-format", "xml", "--output-encoding", "utf-8"],
            );
            assert_eq!(out.status.code(), Some(0));
            let files = m.site.outbox_files();
            let (_, bytes) = files.iter().find(|(n, _)| n.contains("SubscriberLinkage_")).unwrap();
            let text = String::from_utf8(bytes.clone()).unwrap();
            let dir = m.site.dir.path().to_path_buf();
            (
                Box::new(move |both| {
                    // 101's group: its 02 row's flags off
                    let at = text
                        .find(&format!("<SubscriberKey>{}</SubscriberKey>", key(101)))
                        .unwrap();
                    let (head, tail) = text.split_at(at);
                    let mut tail = xml_zero(tail, "NonDisclosureFlg");
                    if both {
                        tail = xml_zero(&tail, "SelfInfoProvisionProhibitedFlg");
                    }
                    let edited = format!("{head}{tail}");
                    assert_ne!(edited, text);
                    let p = dir.join(format!("snapshot_{both}.xml"));
                    std::fs::write(&p, edited).unwrap();
                    p
                }),
                Box::new(|from, extra, env| m.migrate_env(from, extra, env)),
            )
        };

        // dry run of the first source: one loss
        let first = variant(false);
        let out = run(&first, &["--dry-run"], &[]);
        assert_eq!(out.status.code(), Some(5), "{syntax}");
        let dir = report_dir(&out);
        assert_eq!(csv_rows(&dir.join("flag_losses.csv")).len(), 1, "{syntax}");
        let h1 = loss_list_sha(&out, &dir);

        // the second source drops both flags: another list
        let second = variant(true);
        let out = run(&second, &["--dry-run"], &[]);
        assert_eq!(out.status.code(), Some(5));
        let dir = report_dir(&out);
        let losses = csv_rows(&dir.join("flag_losses.csv"));
        assert_eq!(
            losses.iter().map(|l| l[2].as_str()).collect::<Vec<_>>(),
            ["NonDisclosure", "SelfInfoProvisionProhibited"],
            "{syntax}: one loss per flag, in canonical order"
        );
        let h2 = loss_list_sha(&out, &dir);
        assert_ne!(h1, h2);

        // the first list's hash does not accept the second list
        let before = std::fs::read(m.ledger()).unwrap();
        let out = run(&second, &["--accept-flag-losses", &h1, "--reason", "本人申出"], &[]);
        assert_eq!(out.status.code(), Some(5), "{syntax}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&h1) && err.contains(&h2), "names both hashes: {err}");
        let j = json(&report_dir(&out));
        assert_eq!(j["status"], "refused");
        assert_eq!(j["migration"]["flag_losses_accepted"], false);
        assert_eq!(std::fs::read(m.ledger()).unwrap(), before);
        assert_eq!(ledger_flags(&m.ledger(), &key(101)), ["2", "3"]);
        // a count is not a list; the list needs a reason
        for bad in [
            &["--accept-flag-losses", "1", "--reason", "本人申出"][..],
            &["--accept-flag-losses", &h2][..],
            &["--reason", "本人申出"][..],
        ] {
            let out = run(&second, bad, &[]);
            assert_eq!(out.status.code(), Some(2), "{syntax} {bad:?}");
            assert_eq!(std::fs::read(m.ledger()).unwrap(), before);
        }

        // exactly the second list, with a reason: applied and recorded
        let out = run(
            &second,
            &[
                "--accept-flag-losses",
                &h2.to_uppercase(),
                "--reason",
                "本人からの解除申出（2026-11-30 窓口）",
            ],
            &[("USER", Some("kansa-tanto"))],
        );
        assert_eq!(out.status.code(), Some(0), "{syntax}");
        let j = json(&report_dir(&out));
        assert_eq!(j["migration"]["flag_losses_accepted"], true);
        assert_eq!(j["migration"]["flag_loss_list_sha256"], h2.as_str());
        assert_eq!(j["migration"]["accept_flag_losses"], h2.as_str());
        assert_eq!(j["migration"]["operator"]["user"], "kansa-tanto");
        assert_eq!(
            j["migration"]["operator"]["reason"],
            "本人からの解除申出（2026-11-30 窓口）"
        );
        assert!(ledger_flags(&m.ledger(), &key(101)).is_empty(), "{syntax}");

        // without USER or LOGNAME the report names the uid
        let out = run(&second, &["--dry-run"], &[("USER", None), ("LOGNAME", None)]);
        let user = json(&report_dir(&out))["migration"]["operator"]["user"].clone();
        assert!(user.as_str().unwrap().starts_with("uid "), "{user}");
    }
}

/// `text` with the value of the first `<tag>` element set to `0`.
fn xml_zero(text: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let s = text.find(&open).unwrap() + open.len();
    let e = s + text[s..].find('<').unwrap();
    assert_ne!(&text[s..e], "0", "{tag} is set");
    format!("{}0{}", &text[..s], &text[e..])
}

/// R14 in `migrate`: a flagged subscriber whose name Shift_JIS output refuses stays unpublished,
/// and the next `run` sends it (here with `--unmappable replace`, its inbox empty).
#[test]
fn a_refused_subscriber_of_a_migration_is_sent_by_a_later_run() {
    let src = Mig::new();
    let out = src.legacy(
        &samples().join("kokuho_export.csv"),
        &["--output-format", "csv", "--output-encoding", "utf-8"],
    );
    assert_eq!(out.status.code(), Some(0));
    let files = src.site.outbox_files();
    let (_, bytes) = files.iter().find(|(n, _)| n.contains("SubscriberLinkage_")).unwrap();
    let text = String::from_utf8(bytes.clone())
        .unwrap()
        .replace("山田　花子", "𠮷田　花子");
    let snap = src.site.p("snapshot.csv");
    std::fs::write(&snap, text).unwrap();

    let m = Mig::new();
    let out = m.migrate(
        &snap,
        &[
            "--municipality",
            MUNI,
            "--output-format",
            "csv",
            "--output-encoding",
            "shift_jis",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "E_UNMAPPABLE_CHAR is a reject");
    let j = json(&report_dir(&out));
    assert_eq!(j["summary"]["unpublished"], 1, "{}", j["summary"]);
    assert_eq!(ledger_flags(&m.ledger(), &key(101)), ["2", "3"]);

    let inbox = m.site.inbox();
    std::fs::create_dir_all(&inbox).unwrap();
    let o = m.site.run(&["--unmappable", "replace"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let r = m.site.report("");
    assert_eq!(r["summary"]["unpublished"], 0);
    let linkage = subscriber_linkage_for(&m.site, "00131045").expect("sent");
    assert_eq!(
        control_of(&linkage, &key(101)).unwrap(),
        ("2".into(), "1".into(), "0".into())
    );
    assert!(linkage.contains("●田　花子"));
}

/// v1.1 R4 in `migrate`: a snapshot's unflagged, future-dated 後期 registration of a person the
/// ledger holds flagged at 国保 is withheld; the rest of the migration is published.
#[test]
fn a_future_registration_of_a_flagged_person_is_withheld_not_aborting_the_migration() {
    use nhi_linkage::domain::FileKind;
    use nhi_linkage::formats::{Format, TextEncoding};
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::Utf8,
    };
    // the ledger: a flagged 国保 member turning 75 next month
    let m = Mig::new();
    let mn = my_number(4711);
    write_file(
        &m.site.inbox(),
        "SubscriberChange_k",
        FileKind::SubscriberChange,
        &f,
        KOKUHO,
        "K-1",
        "20261110230000",
        &[acquisition(
            KOKUHO,
            &key(1),
            Some(&mn),
            "3001",
            "19520110",
            "20100401",
            "03",
            "山田　花子",
        )],
    );
    write_file(
        &m.site.inbox(),
        "FlagChange_k",
        FileKind::FlagChange,
        &f,
        KOKUHO,
        "KF-1",
        "20261110230100",
        &[flag_set(KOKUHO, &key(1), "3", "2", "20261110090000")],
    );
    assert!(m.site.run(&[]).status.success());
    // the union's server view, from another installation: her future registration, unflagged,
    // and another member
    let u = Site::new();
    write_file(
        &u.inbox(),
        "SubscriberChange_u",
        FileKind::SubscriberChange,
        &f,
        KOUKI,
        "U-1",
        "20261120230000",
        &[
            acquisition(
                KOUKI,
                &key(501),
                Some(&mn),
                "3001",
                "19520110",
                "20270110",
                "03",
                "山田　花子",
            ),
            acquisition(
                KOUKI,
                &key(502),
                None,
                "3002",
                "19400101",
                "20161101",
                "01",
                "田中　二郎",
            ),
        ],
    );
    assert!(
        u.run(&["--output-format", "csv", "--output-encoding", "utf-8"])
            .status
            .success()
    );
    let snap = m.site.p("kouki_snapshot.csv");
    std::fs::write(&snap, subscriber_linkage_for(&u, KOUKI).unwrap()).unwrap();

    let out = m.migrate(&snap, &["--municipality", MUNI]);
    assert_eq!(out.status.code(), Some(5), "withheld: critical, not aborted");
    let j = json(&report_dir(&out));
    assert_eq!(j["summary"]["withheld"], 1);
    let linkage = subscriber_linkage_for(&m.site, KOUKI).expect("the rest is published");
    assert!(control_of(&linkage, &key(502)).is_some());
    assert!(control_of(&linkage, &key(501)).is_none());
}
