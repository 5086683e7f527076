//! The operators' side (issue 15): report.xlsx read back with calamine, the report CSVs' BOM and
//! Shift_JIS option, report.json's run metadata, runs that survive a closed pipe, `-q`,
//! `--log-format json`, `NHI_LOG`, `--version`, config files, validate's totals.

mod common;
use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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

/// `run` of the sample inbox with everything under `root`.
fn run_samples(root: &Path, inbox: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["run", "--init-ledger", "--as-of", "20261201", "--inbox"])
        .arg(inbox)
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

/// The one report folder under `root/reports`.
fn report_dir(root: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("report.json").is_file())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

fn report_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

/// The sample inbox plus one file with rejected records (a bad sex code, E_CODE).
fn inbox_with_rejects(dir: &Path) -> PathBuf {
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    for e in std::fs::read_dir(samples().join("inbox")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, inbox.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::copy(
        samples().join("invalid").join("E_CODE__sex_9.csv"),
        inbox.join("E_CODE__sex_9.csv"),
    )
    .unwrap();
    inbox
}

fn cell_text(c: &Data) -> String {
    match c {
        Data::String(s) => s.clone(),
        Data::Empty => String::new(),
        other => format!("{other:?}"),
    }
}

#[test]
fn report_xlsx_has_japanese_headers_text_identifiers_and_date_cells() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox_with_rejects(dir.path());
    let o = run_samples(dir.path(), &inbox, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let rd = report_dir(dir.path());
    let report = report_json(&rd);
    let bytes = std::fs::read(rd.join("report.xlsx")).unwrap();
    let mut wb: Xlsx<_> = open_workbook_from_rs(std::io::Cursor::new(bytes)).unwrap();
    let names = wb.sheet_names().to_vec();
    assert_eq!(names[0], "概要", "{names:?}");
    assert_eq!(names.last().unwrap(), "不備一覧", "{names:?}");
    // one sheet per worklist the report holds (whatever they are), plus summary and rejects
    let worklists = report["worklists"].as_object().unwrap();
    let with_csv: Vec<&String> = worklists
        .keys()
        .filter(|w| rd.join(format!("{w}.csv")).is_file())
        .collect();
    assert_eq!(names.len(), with_csv.len() + 2, "{names:?} vs {with_csv:?}");
    assert!(names.contains(&"資格確認書の交付".to_owned()), "{names:?}");

    // certificate_issuance: Japanese headers, identifiers as text, the set time a date-time
    let r = wb.worksheet_range("資格確認書の交付").unwrap();
    let head: Vec<String> = r.rows().next().unwrap().iter().map(cell_text).collect();
    assert_eq!(head[..3], ["保険者番号", "被保険者枝番", "氏名"], "{head:?}");
    let rows: Vec<&[Data]> = r.rows().skip(1).collect();
    assert_eq!(rows.len() as u64, worklists["certificate_issuance"].as_u64().unwrap());
    assert!(
        rows.iter().any(|row| row[0] == Data::String("00131045".into())),
        "00131045 stays a text cell: {:?}",
        rows[0]
    );
    for row in &rows {
        match &row[1] {
            Data::String(s) => assert!(s.len() == 16 && s.bytes().all(|b| b.is_ascii_digit()), "{s}"),
            other => panic!("SubscriberKey must be a text cell, got {other:?}"),
        }
        let set_time = head.iter().position(|h| h == "フラグ設定日時").unwrap();
        assert!(matches!(row[set_time], Data::DateTime(_)), "{:?}", row[set_time]);
    }
    // support measure end dates are date cells
    let r = wb.worksheet_range("支援措置期限").unwrap();
    let head: Vec<String> = r.rows().next().unwrap().iter().map(cell_text).collect();
    let end = head.iter().position(|h| h == "支援措置終了日").expect("header");
    let first = r.rows().nth(1).expect("a row");
    match &first[end] {
        Data::DateTime(d) => {
            let serial = chrono::NaiveDate::from_ymd_opt(2026, 10, 19).unwrap()
                - chrono::NaiveDate::from_ymd_opt(1899, 12, 30).unwrap();
            assert_eq!(d.as_f64(), serial.num_days() as f64, "2026-10-19 as Excel counts days");
        }
        other => panic!("support_measure_end must be a date cell, got {other:?}"),
    }

    // rejects: Japanese headers, the E_CODE rejects, record sequences as numbers
    let r = wb.worksheet_range("不備一覧").unwrap();
    let head: Vec<String> = r.rows().next().unwrap().iter().map(cell_text).collect();
    assert_eq!(
        head[..5],
        ["ファイル", "レコード番号", "行", "項目", "エラーコード"],
        "{head:?}"
    );
    let rows: Vec<&[Data]> = r.rows().skip(1).collect();
    assert_eq!(rows.len(), report["rejects"].as_array().unwrap().len());
    assert!(
        rows.iter().any(|row| row[4] == Data::String("E_CODE".into())),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .all(|row| matches!(row[1], Data::Float(_) | Data::Int(_) | Data::Empty))
    );

    // summary: the run id, as text, and the count of every worklist
    let r = wb.worksheet_range("概要").unwrap();
    let all: Vec<Vec<String>> = r.rows().map(|row| row.iter().map(cell_text).collect()).collect();
    assert!(
        all.iter().any(|row| row[2] == report["run_id"].as_str().unwrap()),
        "{all:?}"
    );
    for w in worklists.keys() {
        assert!(all.iter().any(|row| row[3] == *w), "summary lists worklist {w}");
    }
}

#[test]
fn report_xlsx_is_deterministic() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let inbox = samples().join("inbox");
    let o = run_samples(a.path(), &inbox, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // a second apart at least, so that a clock in the workbook would show
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = run_samples(b.path(), &inbox, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let x = std::fs::read(report_dir(a.path()).join("report.xlsx")).unwrap();
    let y = std::fs::read(report_dir(b.path()).join("report.xlsx")).unwrap();
    assert_eq!(x, y, "the same run gives the same report.xlsx bytes");
}

#[test]
fn report_csvs_are_utf8_with_bom_or_shift_jis() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_samples(dir.path(), &samples().join("inbox"), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rd = report_dir(dir.path());
    let csv = std::fs::read(rd.join("certificate_issuance.csv")).unwrap();
    assert!(csv.starts_with("\u{feff}insurer,subscriber_key,name".as_bytes()));
    assert!(String::from_utf8(csv).unwrap().contains("\r\n00131045,"));
    assert!(
        std::fs::read(rd.join("rejects.csv"))
            .unwrap()
            .starts_with("\u{feff}file,".as_bytes())
    );
    assert_eq!(report_json(&rd)["report_encoding"], "utf-8");

    let dir = tempfile::tempdir().unwrap();
    let o = run_samples(
        dir.path(),
        &samples().join("inbox"),
        &["--report-encoding", "shift_jis"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rd = report_dir(dir.path());
    let csv = std::fs::read(rd.join("certificate_issuance.csv")).unwrap();
    assert!(csv.starts_with(b"insurer,subscriber_key,name"), "no BOM in Shift_JIS");
    let (t, _, bad) = encoding_rs::SHIFT_JIS.decode(&csv);
    assert!(!bad);
    assert!(t.contains("佐藤　美咲"), "{t}");
    assert_eq!(report_json(&rd)["report_encoding"], "shift_jis");
}

#[test]
fn report_json_says_when_which_program_and_how_it_ended() {
    let re = |s: &str| {
        s.len() == 25
            && s.ends_with("+09:00")
            && s.as_bytes()[10] == b'T'
            && chrono::DateTime::parse_from_rfc3339(s).is_ok()
    };
    for (inbox_rejects, want) in [(false, 0), (true, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let inbox = if inbox_rejects {
            inbox_with_rejects(dir.path())
        } else {
            samples().join("inbox")
        };
        let o = run_samples(dir.path(), &inbox, &[]);
        assert_eq!(o.status.code(), Some(want), "{}", text(&o));
        let r = report_json(&report_dir(dir.path()));
        assert_eq!(r["exit_status"], want);
        assert!(re(r["started_at"].as_str().unwrap()), "{}", r["started_at"]);
        assert!(re(r["finished_at"].as_str().unwrap()), "{}", r["finished_at"]);
        assert!(r["started_at"].as_str() <= r["finished_at"].as_str());
        assert_eq!(r["program_version"], env!("CARGO_PKG_VERSION"));
        assert!(r["program_commit"].is_string());
        assert!(r["report_schema_version"].as_u64().unwrap() >= 2);
    }
}

#[test]
fn version_shows_commit_and_build_date() {
    let o = Command::new(BIN).arg("--version").output().unwrap();
    let s = String::from_utf8(o.stdout).unwrap();
    assert!(
        s.starts_with(&format!("nhi-linkage {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{s}"
    );
    assert!(s.contains(", built "), "{s}");
}

/// `nhi-linkage run … 2>&1 | head -1`: stdout and stderr closed early must not kill the batch.
#[test]
fn a_closed_stdout_and_stderr_do_not_stop_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["-vv", "run", "--init-ledger", "--as-of", "20261201", "--inbox"])
        .arg(samples().join("inbox"))
        .arg("--ledger")
        .arg(dir.path().join("ledger.sqlite"))
        .arg("--outbox")
        .arg(dir.path().join("outbox"))
        .arg("--reports")
        .arg(dir.path().join("reports"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before the first line
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "not 101 (panic) nor killed by SIGPIPE");
    assert!(report_dir(dir.path()).join("report.xlsx").is_file());
    let published = std::fs::read_dir(dir.path().join("outbox")).unwrap().count();
    assert!(published >= 1, "the run published");

    // validate, likewise: its status is the files', not the pipe's
    let mut child = Command::new(BIN)
        .arg("validate")
        .arg(samples().join("invalid"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    assert_eq!(child.wait().unwrap().code(), Some(1));
}

#[test]
fn quiet_prints_nothing_on_success() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_samples(dir.path(), &samples().join("inbox"), &["-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{}", text(&o));
    let o = Command::new(BIN)
        .args(["-q", "validate"])
        .arg(samples().join("inbox"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{}", text(&o));
    // not a success: what is wrong is still said
    let o = Command::new(BIN)
        .args(["-q", "validate"])
        .arg(samples().join("invalid").join("E_CODE__sex_9.csv"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("E_CODE"), "{}", text(&o));
}

#[test]
fn json_logs_one_object_per_line_in_japan_time_with_the_run_id() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_samples(dir.path(), &samples().join("inbox"), &["-v", "--log-format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let run_id = report_json(&report_dir(dir.path()))["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let err = String::from_utf8(o.stderr).unwrap();
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 4, "{err}");
    let invocation = &lines[0]["invocation"];
    assert!(invocation.is_string());
    for l in &lines {
        let ts = l["timestamp"].as_str().unwrap();
        assert!(ts.ends_with("+09:00"), "{ts}");
        assert!(l["level"].is_string() && l["message"].is_string(), "{l}");
        assert_eq!(&l["invocation"], invocation);
    }
    // from the moment the run id is known (after the inbox is read), every line carries it
    let first = lines
        .iter()
        .position(|l| l.get("run_id").is_some())
        .expect("a line with the run id");
    assert!(lines[first..].iter().all(|l| l["run_id"] == run_id.as_str()), "{err}");
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "committed" && l["run_id"] == run_id.as_str()),
        "{err}"
    );
}

#[test]
fn an_invalid_nhi_log_filter_is_a_usage_error() {
    let o = Command::new(BIN)
        .args(["validate"])
        .arg(samples().join("inbox"))
        .env("NHI_LOG", "nhi_linkage=loud")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("NHI_LOG"), "{}", text(&o));
    assert!(o.stdout.is_empty());
}

#[test]
fn config_tables_refuse_unknown_keys_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("nhi.toml");
    std::fs::write(&cfg, "[limits]\nmax_feild_bytes = 10\n").unwrap();
    for cmd in [
        vec!["run", "--inbox", "samples/inbox"],
        vec!["validate", "samples/inbox"],
        vec!["merge-shards", "--from", "x"],
        vec!["age-transition", "extract", "--out", "x"],
        vec!["age-transition", "answer", "--inquiry", "x", "--out", "x"],
        vec!["ledger", "check"],
        vec![
            "migrate",
            "--from",
            "samples/legacy/kokuho_export.csv",
            "--reports",
            "x",
        ],
    ] {
        let o = Command::new(BIN)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(&cmd)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{cmd:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("max_feild_bytes"), "{cmd:?}: {err}");
    }
}

#[test]
fn config_applies_to_every_command_that_shares_options_with_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // validate takes [limits] from the config: a 4-byte field limit rejects records
    let cfg = root.join("limits.toml");
    std::fs::write(&cfg, "[limits]\nmax_field_bytes = 4\n").unwrap();
    let o = Command::new(BIN)
        .arg("validate")
        .arg(samples().join("inbox"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("E_FIELD_FORMAT"),
        "{}",
        text(&o)
    );

    // run and age-transition extract read ledger and reports from one config file
    let cfg = root.join("nhi.toml");
    std::fs::write(
        &cfg,
        format!(
            "ledger = {:?}\noutbox = {:?}\nreports = {:?}\nreport_encoding = \"shift_jis\"\n",
            root.join("ledger.sqlite"),
            root.join("outbox"),
            root.join("reports")
        ),
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["run", "--init-ledger", "--as-of", "20261201", "--inbox"])
        .arg(samples().join("inbox"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = Command::new(BIN)
        .args(["age-transition", "extract", "--as-of", "20261201", "--out"])
        .arg(root.join("handoff"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(matches!(o.status.code(), Some(0 | 5)), "{}", text(&o));
    let extract = report_dir_in(&root.join("reports"), "extract-20261201");
    assert_eq!(report_json(&extract)["report_encoding"], "shift_jis");
    assert_eq!(
        report_json(&extract)["exit_status"].as_i64(),
        o.status.code().map(i64::from)
    );
}

#[test]
fn validate_ends_with_a_totals_line() {
    let o = Command::new(BIN)
        .arg("validate")
        .arg(samples().join("inbox"))
        .arg(samples().join("invalid").join("E_CODE__sex_9.csv"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let files = std::fs::read_dir(samples().join("inbox")).unwrap().count() + 1;
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with(&format!(
            "TOTAL {files} file(s): {} OK, 1 with errors, 0 rejected;",
            files - 1
        )),
        "{last}"
    );
}

/// Everything under `root`, as relative paths.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Issue 15: a place the run cannot write is found before the inbox is read, named, and refused
/// with exit 2 creating nothing (no ledger, lock file, outbox or reports). Tests run as root,
/// where `chmod` does not stop writing; /sys refuses new files even to root, and a file in the
/// way of a folder refuses for anyone.
#[test]
fn an_unwritable_outbox_reports_or_ledger_folder_is_refused_before_reading_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("site");
    std::fs::create_dir_all(&root).unwrap();
    // a file in the way of the outbox / of the reports folder's parent / of the ledger's folder
    std::fs::write(root.join("outbox"), b"").unwrap();
    let before = tree(&root);
    let o = run_samples(&root, &samples().join("inbox"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("outbox {} is not a folder", root.join("outbox").display())),
        "{err}"
    );
    assert!(!err.contains("reading inbox"), "refused before reading: {err}");
    assert_eq!(tree(&root), before, "created nothing");

    std::fs::remove_file(root.join("outbox")).unwrap();
    std::fs::write(root.join("reports"), b"").unwrap();
    let before = tree(&root);
    let o = run_samples(&root, &samples().join("inbox"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "reports folder {} is not a folder",
            root.join("reports").display()
        )),
        "{err}"
    );
    assert_eq!(tree(&root), before, "created nothing");
    std::fs::remove_file(root.join("reports")).unwrap();
    let before = tree(&root);

    // a folder no one may create files in (sysfs): named, with the reason
    if Path::new("/sys").is_dir() {
        let o = Command::new(BIN)
            .args(["run", "--init-ledger", "--as-of", "20261201", "--inbox"])
            .arg(samples().join("inbox"))
            .arg("--ledger")
            .arg(root.join("ledger.sqlite"))
            .args(["--outbox", "/sys/nhi-linkage-test/outbox", "--reports"])
            .arg(root.join("reports"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("outbox /sys/nhi-linkage-test/outbox: cannot write in /sys"),
            "{err}"
        );
        assert_eq!(tree(&root), before, "created nothing");
    }
}

/// Issue 15: a refused `run --shard` (an inbox holding 国保 and 後期 subscribers) with
/// `--init-ledger` creates nothing: the new ledger, its lock file, the outbox and the reports
/// folder go again. A ledger that holds a run is never removed by a refusal.
#[test]
fn a_refused_shard_run_creates_nothing() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("site");
    let o = run_samples(&root, &samples().join("inbox"), &["--shard", "0/2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot hold both"),
        "{}",
        text(&o)
    );
    assert!(!root.exists(), "created nothing: {:?}", tree(&root));

    // the same refusal against a ledger that holds a run keeps the ledger and its outputs
    let o = run_samples(&root, &samples().join("inbox"), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let before = tree(&root);
    let o = run_samples(
        &root,
        &samples().join("inbox"),
        &["--shard", "0/2", "--as-of", "20261202"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(tree(&root), before, "the ledger and the earlier run's folders stay");
}
