//! Shared helpers of the integration tests: write input files with the project's own writer, run
//! the real binary, read linkage rows back.
#![allow(dead_code, clippy::too_many_arguments)]

use nhi_linkage::domain::{FileKind, InsurerNumber, Timestamp, ids};
use nhi_linkage::formats::writer::{RecordWriter, UnmappablePolicy};
use nhi_linkage::formats::{FileHeader, Format, TextEncoding};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_nhi-linkage");

/// 国保 of 新宿区-like test city (6 digits 131045, written 00131045).
pub const KOKUHO: &str = "131045";
/// The prefecture's 後期 union.
pub const KOUKI: &str = "39130018";
pub const MUNI: &str = "131041";

/// Runs `generate --subscribers N --seed S --as-of 20261201 <extra> --out DIR` and returns its
/// listing (stdout); fails the test if the command fails.
pub fn generate(subscribers: u32, seed: &str, extra: &[&str], out: &Path) -> String {
    let o = Command::new(BIN)
        .args(["generate", "--subscribers", &subscribers.to_string(), "--seed", seed])
        .args(["--as-of", "20261201"])
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// A finished command's exit status and both output streams, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn my_number(body: u64) -> String {
    let b = format!("{body:011}");
    format!("{b}{}", ids::individual_number_check_digit(b.as_bytes()))
}

pub fn key(n: u64) -> String {
    format!("{n:016}")
}

pub struct Files {
    pub format: Format,
    pub encoding: TextEncoding,
}

/// Writes a file of `kind` with rows given as field → value (absent = empty).
pub fn write_file(
    dir: &Path,
    name: &str,
    kind: FileKind,
    f: &Files,
    sender: &str,
    id: &str,
    ctime: &str,
    rows: &[BTreeMap<&str, String>],
) -> PathBuf {
    let rows: Vec<RowWithItems> = rows.iter().map(|r| (r.clone(), Vec::new())).collect();
    write_file_with_items(dir, name, kind, f, sender, id, ctime, &rows)
}

/// A row (field → value) with its 副本 items (ItemCode, Value).
pub type RowWithItems<'a> = (BTreeMap<&'a str, String>, Vec<(&'a str, &'a str)>);

/// Like [`write_file`], each row with its 副本 items (ItemCode, Value).
pub fn write_file_with_items(
    dir: &Path,
    name: &str,
    kind: FileKind,
    f: &Files,
    sender: &str,
    id: &str,
    ctime: &str,
    rows: &[RowWithItems],
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{name}.{}", f.format.extension()));
    let header = FileHeader {
        kind,
        file_identifier: id.into(),
        sender: InsurerNumber::parse(sender).unwrap(),
        creation_time: Timestamp::parse(ctime).unwrap(),
        file_sequence: 1,
        format: f.format,
        encoding: f.encoding,
    };
    let file = std::fs::File::create(&path).unwrap();
    let mut w = RecordWriter::start(std::io::BufWriter::new(file), header, UnmappablePolicy::Reject).unwrap();
    for (i, (row, items)) in rows.iter().enumerate() {
        let seq = (i + 1).to_string();
        let vals: Vec<String> = kind
            .fields()
            .iter()
            .map(|fname| {
                if *fname == "RecordSequence" {
                    seq.clone()
                } else {
                    row.get(fname).cloned().unwrap_or_default()
                }
            })
            .collect();
        let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
        w.write(&refs, items).unwrap();
    }
    w.finish().unwrap();
    path
}

pub fn row(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// A 資格取得 row.
pub fn acquisition(
    insurer: &str,
    k: &str,
    mn: Option<&str>,
    resident: &str,
    birth: &str,
    qdate: &str,
    reason: &str,
    name: &str,
) -> BTreeMap<&'static str, String> {
    let mut r = row(&[
        ("ChangeType", "1"),
        ("EffectiveDate", "20261120"),
        ("InsurerNumber", insurer),
        ("SubscriberKey", k),
        ("InsuredIdentificationNumber", "1001"),
        ("InsuredBranchNumber", "00"),
        ("MunicipalityCode", MUNI),
        ("ResidentCode", resident),
        ("Name", name),
        ("NameKana", "ヤマダ　ハナコ"),
        ("Sex1", "2"),
        ("Birthdate", birth),
        ("QualificationDate", qdate),
        ("ReasonOfQualification", reason),
        ("PersonalFamilyClassification", "1"),
        ("PostNumber", "1600023"),
        ("Address", "東京都新宿区西新宿九丁目９番９号秘匿荘"),
    ]);
    if let Some(m) = mn {
        r.insert("IndividualNumber", m.to_string());
    }
    r
}

/// A 記載事項変更 (`2`), 資格喪失 (`3`) or 取消 (`9`) row with only the keys (absent fields keep
/// the ledger's values); add fields with `insert`.
pub fn keys_change(change_type: &str, date: &str, insurer: &str, k: &str) -> BTreeMap<&'static str, String> {
    row(&[
        ("ChangeType", change_type),
        ("EffectiveDate", date),
        ("InsurerNumber", insurer),
        ("SubscriberKey", k),
        ("InsuredIdentificationNumber", "1001"),
        ("InsuredBranchNumber", "00"),
    ])
}

pub fn flag_set(insurer: &str, k: &str, flag_type: &str, reason: &str, time: &str) -> BTreeMap<&'static str, String> {
    row(&[
        ("EffectiveTime", time),
        ("FlagType", flag_type),
        ("Operation", "1"),
        ("Scope", "1"),
        ("InsurerNumber", insurer),
        ("SubscriberKey", k),
        ("ReasonCode", reason),
        ("Source", "1"),
    ])
}

/// A scratch installation: inbox, outbox, reports, ledger.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        Site {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
    pub fn inbox(&self) -> PathBuf {
        self.p("inbox")
    }
    pub fn run(&self, extra: &[&str]) -> Output {
        self.run_env(extra, &[])
    }
    pub fn run_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(BIN);
        c.args(["run", "--inbox"]).arg(self.inbox());
        c.arg("--outbox")
            .arg(self.p("outbox"))
            .arg("--reports")
            .arg(self.p("reports"))
            .arg("--ledger")
            .arg(self.p("ledger.sqlite"));
        if !self.p("ledger.sqlite").exists() {
            c.arg("--init-ledger"); // the first run of a site creates its ledger
        }
        if !extra.contains(&"--as-of") {
            c.args(["--as-of", "20261201"]);
        }
        c.args(extra);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }
    /// Every published file, by path relative to the outbox, with its bytes.
    pub fn outbox_files(&self) -> BTreeMap<String, Vec<u8>> {
        files_under(&self.p("outbox"))
    }
    /// The report.json of the most recent run whose folder ends with `suffix`, without its
    /// wall-clock times (`started_at`, `finished_at`: null), so that reports compare.
    pub fn report(&self, suffix: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.report_dir(suffix).join("report.json")).unwrap();
        let mut r: serde_json::Value = serde_json::from_str(&text).unwrap();
        r["started_at"] = serde_json::Value::Null;
        r["finished_at"] = serde_json::Value::Null;
        r
    }
}

impl Site {
    /// The folder of the most recent report whose name ends with `suffix`, or begins with it
    /// (an extract's folder is `extract-<date>-<content hash>`).
    pub fn report_dir(&self, suffix: &str) -> PathBuf {
        report_dir_in(&self.p("reports"), suffix)
    }
}

/// [`Site::report_dir`] in any reports folder.
pub fn report_dir_in(reports: &Path, suffix: &str) -> PathBuf {
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(reports)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            (name.ends_with(suffix) || name.starts_with(suffix)) && !name.starts_with('.')
        })
        .map(|p| (std::fs::metadata(p.join("report.json")).unwrap().modified().unwrap(), p))
        .collect();
    dirs.sort();
    dirs.pop().expect("a report").1
}

pub fn files_under(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// Decodes a linkage file (either encoding) to text.
pub fn text_of(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => encoding_rs::SHIFT_JIS.decode_without_bom_handling(bytes).0.into_owned(),
    }
}

/// The `02` row values (self-info, non-disclosure, auto-response) of subscriber `k`, from a
/// SubscriberLinkage file in CSV or XML.
pub fn control_of(linkage: &str, k: &str) -> Option<(String, String, String)> {
    if linkage.starts_with("H,") {
        let lines: Vec<&str> = linkage.lines().collect();
        let id = lines
            .iter()
            .find(|l| l.starts_with("01,") && l.split(',').nth(4) == Some(k))?
            .split(',')
            .nth(1)?
            .to_owned();
        let l = lines
            .iter()
            .find(|l| l.starts_with("02,") && l.split(',').nth(1) == Some(id.as_str()))?;
        let c: Vec<&str> = l.split(',').collect();
        Some((c[2].into(), c[3].into(), c[4].into()))
    } else {
        let pos = linkage.find(&format!("<SubscriberKey>{k}</SubscriberKey>"))?;
        let rest = &linkage[pos..];
        let get = |tag: &str| {
            let s = rest.find(&format!("<{tag}>"))? + tag.len() + 2;
            let e = rest[s..].find('<')? + s;
            Some(rest[s..e].to_owned())
        };
        Some((
            get("SelfInfoProvisionProhibitedFlg")?,
            get("NonDisclosureFlg")?,
            get("AutoResponseProhibitedFlg")?,
        ))
    }
}

pub fn subscriber_linkage_for(site: &Site, insurer: &str) -> Option<String> {
    // the most recent run's file (run folders are named by hash, not by time)
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    let mut stack = vec![site.p("outbox")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("SubscriberLinkage_{insurer}"))
            {
                found.push((std::fs::metadata(&p).unwrap().modified().unwrap(), p));
            }
        }
    }
    found.sort();
    found.last().map(|(_, p)| text_of(&std::fs::read(p).unwrap()))
}

pub const VARIANTS: [(Format, TextEncoding); 4] = [
    (Format::Csv, TextEncoding::Utf8),
    (Format::Csv, TextEncoding::ShiftJis),
    (Format::Xml, TextEncoding::Utf8),
    (Format::Xml, TextEncoding::ShiftJis),
];

pub fn enc_arg(e: TextEncoding) -> &'static str {
    match e {
        TextEncoding::Utf8 => "utf-8",
        TextEncoding::ShiftJis => "shift_jis",
    }
}
pub fn fmt_arg(f: Format) -> &'static str {
    match f {
        Format::Csv => "csv",
        Format::Xml => "xml",
    }
}
