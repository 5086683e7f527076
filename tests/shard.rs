//! Scale-out, driving the real binary: the same inbox run once unsharded and as N separate
//! `run --shard I/N` processes joined by `merge-shards` gives byte-identical linkage files and
//! MANIFEST.json, and the shard ledgers together hold what the single ledger holds. Also: the
//! refusals (国保 and 後期 in one sharded ledger, a ledger used by another shard, an incomplete
//! shard set) and the whole 国保 → extract → union cycle with both sides sharded.

mod common;
use common::*;
use nhi_linkage::domain::{FileKind, InsurerNumber, Timestamp};
use nhi_linkage::formats::linkage::{LinkageLayout, StandardLayout};
use nhi_linkage::formats::linkage_reader::{LinkageFile, LinkageItem, LinkageReader, LinkageRows};
use nhi_linkage::formats::writer::{RecordWriter, UnmappablePolicy};
use nhi_linkage::formats::{FileHeader, Format, TextEncoding, hex};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A second 後期 insurer number of the union (another municipality).
const KOUKI2: &str = "39131016";
const N: u32 = 3;

/// A linkage file held in memory, read whole.
fn read_whole(bytes: &[u8]) -> anyhow::Result<LinkageFile> {
    LinkageReader::new(bytes).and_then(LinkageReader::read_all)
}

/// What the writer makes of a file's header and rows.
fn written(file: &LinkageFile) -> Vec<u8> {
    let layout = StandardLayout {
        policy: UnmappablePolicy::Reject,
    };
    let mut out = Vec::new();
    let h = &file.header;
    match &file.rows {
        LinkageRows::Subscribers(v) => layout.subscriber_linkage(h, &mut v.iter().cloned(), &mut out),
        LinkageRows::Flags(v) => layout.flag_linkage(h, &mut v.iter().cloned(), &mut out),
        LinkageRows::Fukuhon(v) => layout.fukuhon_linkage(h, &mut v.iter().cloned(), &mut out),
    }
    .unwrap();
    out
}

fn birth(i: u64) -> String {
    format!("195201{i:02}") // 75 on 2027-01-ii: future-dated against as-of 2026-12-01
}
fn transition(i: u64) -> String {
    format!("202701{i:02}")
}
fn resident(i: u64) -> String {
    (5000 + i).to_string()
}
fn mn(i: u64) -> Option<String> {
    i.is_multiple_of(2).then(|| my_number(7000 + i))
}
fn union_key(i: u64) -> String {
    key(900_000 + i)
}
fn union_insurer(i: u64) -> &'static str {
    if (17..=21).contains(&i) { KOUKI2 } else { KOUKI }
}

fn out_text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `run` on `inbox` with everything else under `root`.
fn run_at(inbox: &Path, root: &Path, extra: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    c.args(["run", "--as-of", "20261201", "--inbox"])
        .arg(inbox)
        .arg("--outbox")
        .arg(root.join("outbox"))
        .arg("--reports")
        .arg(root.join("reports"))
        .arg("--ledger")
        .arg(root.join("ledger.sqlite"));
    if !root.join("ledger.sqlite").exists() {
        c.arg("--init-ledger");
    }
    c.args(extra).output().unwrap()
}

fn merge(froms: &[PathBuf], out: &Path) -> Output {
    let mut c = Command::new(BIN);
    c.arg("merge-shards");
    for f in froms {
        c.arg("--from").arg(f);
    }
    c.arg("--outbox")
        .arg(out.join("outbox"))
        .arg("--reports")
        .arg(out.join("reports"))
        .output()
        .unwrap()
}

/// The run id a `run` printed.
fn run_id(o: &Output) -> String {
    let s = String::from_utf8_lossy(&o.stdout);
    let line = s.lines().find(|l| l.starts_with("run ")).expect("a run line");
    line.split_whitespace().nth(1).unwrap().trim_end_matches(':').to_owned()
}

/// One unsharded installation, N shard installations and the merged one, on one inbox.
struct Deployment {
    dir: tempfile::TempDir,
}

impl Deployment {
    fn new() -> Self {
        Deployment {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn inbox(&self) -> PathBuf {
        self.dir.path().join("inbox")
    }
    fn single(&self) -> PathBuf {
        self.dir.path().join("single")
    }
    fn shard(&self, i: u32) -> PathBuf {
        self.dir.path().join(format!("shard-{i}"))
    }
    fn shards(&self) -> Vec<PathBuf> {
        (0..N).map(|i| self.shard(i)).collect()
    }
    fn merged(&self) -> PathBuf {
        self.dir.path().join("merged")
    }

    /// Runs unsharded and sharded + merge; asserts identical outcomes; returns the run id.
    fn run_both(&self, extra: &[&str]) -> String {
        let single = run_at(&self.inbox(), &self.single(), extra);
        let code = single.status.code();
        assert!(matches!(code, Some(0 | 1 | 5)), "{}", out_text(&single));
        let id = run_id(&single);
        for i in 0..N {
            let mut args = extra.to_vec();
            let s = format!("{i}/{N}");
            args.extend(["--shard", &s]);
            let o = run_at(&self.inbox(), &self.shard(i), &args);
            // a critical finding (exit 5) is about one subscriber: only its shard reports it
            if code == Some(5) {
                assert!(
                    matches!(o.status.code(), Some(0 | 1 | 5)),
                    "shard {i}: {}",
                    out_text(&o)
                );
            } else {
                assert_eq!(o.status.code(), code, "shard {i}: {}", out_text(&o));
            }
            assert_eq!(run_id(&o), format!("{id}-s{i}of{N}"));
        }
        let m = merge(&self.shards(), &self.merged());
        assert_eq!(m.status.code(), code, "merge: {}", out_text(&m));
        assert!(String::from_utf8_lossy(&m.stdout).contains(&format!("merged run {id} from 3 shard(s)")));
        self.assert_same_outbox();
        self.assert_same_report(&id);
        self.assert_same_ledger();
        id
    }

    /// On every linkage file the shard runs and the merge published, the streaming reader gives,
    /// group by group and row by row, what the file read whole gives, what the writer turns back
    /// into the same bytes, and the file's digest.
    fn assert_streaming_reader_agrees(&self) {
        let mut roots = self.shards();
        roots.push(self.merged());
        let mut files = 0;
        for root in roots {
            let outbox = root.join("outbox");
            for (name, bytes) in files_under(&outbox) {
                if name.ends_with("MANIFEST.json") {
                    continue;
                }
                let whole = read_whole(&bytes).unwrap_or_else(|e| panic!("{name}: {e:#}"));
                assert_eq!(written(&whole), bytes, "{name}: written again byte for byte");
                let mut r = LinkageReader::open(&outbox.join(&name)).unwrap();
                assert_eq!(*r.header(), whole.header, "{name}");
                let items: Vec<LinkageItem> = r.by_ref().collect::<anyhow::Result<_>>().unwrap();
                let expected: Vec<LinkageItem> = match whole.rows {
                    LinkageRows::Subscribers(v) => v.into_iter().map(LinkageItem::Subscriber).collect(),
                    LinkageRows::Flags(v) => v.into_iter().map(LinkageItem::Flag).collect(),
                    LinkageRows::Fukuhon(v) => v.into_iter().map(LinkageItem::Fukuhon).collect(),
                };
                assert!(!items.is_empty(), "{name}");
                assert_eq!(items, expected, "{name}");
                let (sha, n) = r.finish().unwrap();
                assert_eq!(
                    (hex(&sha), n),
                    (hex(&Sha256::digest(&bytes)), bytes.len() as u64),
                    "{name}"
                );
                files += 1;
            }
        }
        assert!(files >= 4 * N as usize, "{files} linkage files");
    }

    fn assert_same_outbox(&self) {
        let single = files_under(&self.single().join("outbox"));
        let merged = files_under(&self.merged().join("outbox"));
        assert!(!single.is_empty());
        assert_eq!(
            single.keys().collect::<Vec<_>>(),
            merged.keys().collect::<Vec<_>>(),
            "the same run folders and files"
        );
        for (name, bytes) in &single {
            assert!(
                merged[name] == *bytes,
                "{name} differs:\n--- single ---\n{}\n--- merged ---\n{}",
                text_of(bytes),
                text_of(&merged[name])
            );
        }
    }

    fn assert_same_report(&self, id: &str) {
        let read = |root: PathBuf| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(root.join("reports").join(id).join("report.json")).unwrap()).unwrap()
        };
        let (s, m) = (read(self.single()), read(self.merged()));
        for k in [
            "run_id",
            "as_of",
            "status",
            "inputs",
            "outputs",
            "summary",
            "pending_handoffs",
            "worklists",
        ] {
            assert_eq!(s[k], m[k], "report.json key {k}");
        }
        let multiset = |v: &serde_json::Value| {
            let mut x: Vec<String> = v.as_array().unwrap().iter().map(|e| e.to_string()).collect();
            x.sort();
            x
        };
        for k in ["rejects", "carries", "pending_flags", "flag_changes"] {
            assert_eq!(multiset(&s[k]), multiset(&m[k]), "report.json key {k}");
        }
        for w in s["worklists"].as_object().unwrap().keys() {
            let rows = |root: PathBuf| -> BTreeSet<String> {
                let t = std::fs::read_to_string(root.join("reports").join(id).join(format!("{w}.csv"))).unwrap();
                t.lines().map(str::to_owned).collect()
            };
            assert_eq!(rows(self.single()), rows(self.merged()), "worklist {w}");
        }
        assert!(self.merged().join("reports").join(id).join("report.html").is_file());
        assert_eq!(m["sharded"]["count"], N);
    }

    fn assert_same_ledger(&self) {
        let single = self.single().join("ledger.sqlite");
        let shards: Vec<PathBuf> = self.shards().iter().map(|s| s.join("ledger.sqlite")).collect();
        // subscriber data: partitioned, each row in exactly one shard
        for sql in [
            "SELECT * FROM enrollment",
            "SELECT * FROM period",
            "SELECT * FROM flag WHERE subscriber_key <> ''",
            "SELECT insurer, subscriber_key, info_code, flag_type, operation, reason_code, source, effective_time, \
             support_measure_end, file, record_sequence, file_order FROM pending_flag",
            "SELECT insurer, subscriber_key, info_code, effective_date, disclosure, items FROM fukuhon",
        ] {
            let mut union: Vec<String> = shards.iter().flat_map(|s| dump(s, sql)).collect();
            union.sort();
            assert_eq!(union, dump(&single, sql), "{sql}");
        }
        // insurer-level data: in every shard
        for sql in [
            "SELECT * FROM flag WHERE subscriber_key = ''",
            "SELECT source_insurer, source_key, individual_number, municipality, resident_code, birthdate, \
             transition_date, self_info, non_disclosure, auto_response, flag_set_time, origin FROM handoff",
        ] {
            for s in &shards {
                assert_eq!(dump(s, sql), dump(&single, sql), "{sql}");
            }
        }
        // a hand-off is matched in the shard of its registration, pending in the others
        let matched = "SELECT source_insurer, source_key, matched_insurer, matched_key FROM handoff WHERE matched_key IS NOT NULL";
        let mut union: Vec<String> = shards.iter().flat_map(|s| dump(s, matched)).collect();
        union.sort();
        assert_eq!(union, dump(&single, matched), "matched hand-offs");
        let pending = "SELECT source_insurer, source_key FROM handoff WHERE matched_key IS NULL";
        let in_every: BTreeSet<String> = shards
            .iter()
            .map(|s| dump(s, pending).into_iter().collect::<BTreeSet<_>>())
            .reduce(|a, b| a.intersection(&b).cloned().collect())
            .unwrap();
        assert_eq!(
            in_every,
            dump(&single, pending).into_iter().collect(),
            "pending hand-offs"
        );
    }
}

fn dump(db: &Path, sql: &str) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare(sql).unwrap();
    let n = st.column_count();
    let mut rows: Vec<String> = st
        .query_map([], |r| {
            Ok((0..n)
                .map(|i| format!("{:?}", r.get::<_, rusqlite::types::Value>(i).unwrap()))
                .collect::<Vec<_>>()
                .join("|"))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort();
    rows
}

fn registration(i: u64, reason: &str, qdate: &str, b: &str) -> BTreeMap<&'static str, String> {
    let mut r = acquisition(
        union_insurer(i),
        &union_key(i),
        mn(i).as_deref(),
        &resident(i),
        b,
        qdate,
        reason,
        "後期　太郎",
    );
    r.insert("NameKana", "コウキ　タロウ".into());
    r.insert("Sex1", "1".into());
    r
}

fn handoff(i: u64, source_key: u64, b: &str, adate: &str) -> BTreeMap<&'static str, String> {
    let si = ["1", "2", "0"][(i % 3) as usize];
    let nd = if i.is_multiple_of(2) || si == "0" { "1" } else { "0" };
    let ar = if i.is_multiple_of(4) { "1" } else { "0" };
    let mut r = row(&[
        ("SourceInsurerNumber", KOKUHO),
        ("SourceSubscriberKey", &key(source_key)),
        ("MunicipalityCode", MUNI),
        ("ResidentCode", &resident(i)),
        ("Name", "後期　太郎"),
        ("NameKana", "ｺｳｷ ﾀﾛｳ"),
        ("Sex1", "1"),
        ("Birthdate", b),
        ("AgeTransitionDate", adate),
        ("SelfInfoProvisionProhibitedFlg", si),
        ("NonDisclosureFlg", nd),
        ("AutoResponseProhibitedFlg", ar),
        ("FlagSetTime", "20261001090000"),
    ]);
    if let Some(m) = mn(i) {
        r.insert("IndividualNumber", m);
    }
    r
}

fn flag_row(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
    let mut r = row(&[
        ("EffectiveTime", "20261110090000"),
        ("Operation", "1"),
        ("Scope", "1"),
        ("Source", "1"),
    ]);
    for (k, v) in pairs {
        r.insert(k, v.to_string());
    }
    r
}

/// A Fukuhon file (副本 with item pairs).
fn write_fukuhon(dir: &Path, f: &Files, id: &str, ctime: &str, rows: &[(&str, String, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    let header = FileHeader {
        kind: FileKind::Fukuhon,
        file_identifier: id.into(),
        sender: InsurerNumber::parse(KOUKI).unwrap(),
        creation_time: Timestamp::parse(ctime).unwrap(),
        file_sequence: 1,
        format: f.format,
        encoding: f.encoding,
    };
    let file = std::fs::File::create(dir.join(format!("Fukuhon_{id}.{}", f.format.extension()))).unwrap();
    let mut w = RecordWriter::start(std::io::BufWriter::new(file), header, UnmappablePolicy::Reject).unwrap();
    for (i, (insurer, k, disclosure)) in rows.iter().enumerate() {
        let seq = (i + 1).to_string();
        let vals = [
            seq.as_str(),
            "1",
            "20261120",
            insurer,
            k.as_str(),
            "TM00000000000004",
            disclosure,
        ];
        w.write(&vals, &[("001", "20261101"), ("002", "所見,\"なし\" <要確認>")])
            .unwrap();
    }
    w.finish().unwrap();
}

/// Night 1: registrations (future-dated transitions, a disability route, moved-in members), the
/// 国保 side's hand-offs with DV flags (one ambiguous pair, one without registration), flags of
/// every scope, 副本.
fn night_1(inbox: &Path, f: &Files) {
    let mut regs: Vec<_> = (1..=20)
        .map(|i| registration(i, "01", &transition(i), &birth(i)))
        .collect();
    regs.push(registration(22, "02", "20261101", "19580301"));
    regs.push(registration(23, "03", "20200401", "19400101"));
    regs.push(registration(24, "03", "20200401", "19400102"));
    write_file(
        inbox,
        "SubscriberChange_u1",
        FileKind::SubscriberChange,
        f,
        KOUKI,
        "U-1",
        "20261120230000",
        &regs,
    );

    let mut hs: Vec<_> = [1, 2, 3, 4, 5, 6, 7, 8, 17, 18]
        .into_iter()
        .map(|i| handoff(i, i, &birth(i), &transition(i)))
        .collect();
    hs.push(handoff(22, 22, "19580301", "20261101"));
    hs.push(handoff(6, 106, &birth(6), &transition(6))); // a second 国保 enrollment of person 6: ambiguous
    hs.push(handoff(27, 27, &birth(27), &transition(27))); // no registration: stays pending
    write_file(
        inbox,
        "AgeTransitionHandoff_k1",
        FileKind::AgeTransitionHandoff,
        f,
        KOKUHO,
        "H-1",
        "20261115230000",
        &hs,
    );

    let k10 = union_key(10);
    let k11 = union_key(11);
    let flags = vec![
        flag_set(KOUKI, &k10, "3", "2", "20261110090000"),
        flag_set(KOUKI, &k10, "2", "", "20261110090000"),
        flag_row(&[
            ("FlagType", "2"),
            ("InsurerNumber", KOUKI),
            ("SubscriberKey", &k11),
            ("InfoCode", "TM00000000000001"),
        ]),
        flag_row(&[
            ("FlagType", "2"),
            ("Scope", "2"),
            ("InsurerNumber", KOUKI),
            ("InfoCode", "TM00000000000002"),
        ]),
        flag_row(&[
            ("FlagType", "1"),
            ("Scope", "2"),
            ("InsurerNumber", KOUKI2),
            ("InfoCode", "TM00000000000003"),
        ]),
        // not enrolled yet: pending (R7)
        flag_set(KOUKI, &key(950_001), "3", "1", "20261110090000"),
        // releasing an insurer-wide flag that is not set: rejected in every shard, reported once
        flag_row(&[
            ("FlagType", "2"),
            ("Operation", "2"),
            ("Scope", "2"),
            ("InsurerNumber", KOUKI),
            ("InfoCode", "TM00000000000004"),
        ]),
    ];
    write_file(
        inbox,
        "FlagChange_u1",
        FileKind::FlagChange,
        f,
        KOUKI,
        "UF-1",
        "20261120230100",
        &flags,
    );
    write_fukuhon(
        inbox,
        f,
        "UK-1",
        "20261120230200",
        &[
            (KOUKI, union_key(1), "1"),
            (KOUKI, union_key(5), ""),
            (KOUKI, union_key(12), "1"),
            (KOUKI2, union_key(17), "1"),
        ],
    );
}

/// Night 2: hand-offs for registrations already held (published again with the flags), a
/// registration with its hand-off, the pending flag's enrollment, a change, a loss, a 取消, a
/// release.
fn night_2(inbox: &Path, f: &Files) {
    let hs: Vec<_> = [9, 10, 11, 12, 21]
        .into_iter()
        .map(|i| handoff(i, i, &birth(i), &transition(i)))
        .collect();
    write_file(
        inbox,
        "AgeTransitionHandoff_k2",
        FileKind::AgeTransitionHandoff,
        f,
        KOKUHO,
        "H-2",
        "20261124230000",
        &hs,
    );
    let mut r21 = registration(21, "01", &transition(21), &birth(21));
    r21.insert("EffectiveDate", "20261125".into());
    let mut late = acquisition(
        KOUKI,
        &key(950_001),
        None,
        "6001",
        "19400301",
        "20200401",
        "03",
        "遅延　花子",
    );
    late.insert("EffectiveDate", "20261125".into());
    let changes = vec![
        r21,
        late,
        row(&[
            ("ChangeType", "2"),
            ("EffectiveDate", "20261125"),
            ("InsurerNumber", KOUKI),
            ("SubscriberKey", &union_key(3)),
            ("PostNumber", "1600022"),
            ("Address", "東京都新宿区新宿一丁目1番1号"),
        ]),
        row(&[
            ("ChangeType", "3"),
            ("EffectiveDate", "20261124"),
            ("InsurerNumber", KOUKI),
            ("SubscriberKey", &union_key(23)),
            ("DisqualificationDate", "20261124"),
            ("ReasonOfLoss", "01"),
        ]),
        row(&[
            ("ChangeType", "9"),
            ("EffectiveDate", "20261125"),
            ("InsurerNumber", KOUKI),
            ("SubscriberKey", &union_key(24)),
        ]),
    ];
    write_file(
        inbox,
        "SubscriberChange_u2",
        FileKind::SubscriberChange,
        f,
        KOUKI,
        "U-2",
        "20261125230000",
        &changes,
    );
    let release = flag_row(&[
        ("EffectiveTime", "20261125090000"),
        ("FlagType", "2"),
        ("Operation", "2"),
        ("InsurerNumber", KOUKI),
        ("SubscriberKey", &union_key(10)),
    ]);
    write_file(
        inbox,
        "FlagChange_u2",
        FileKind::FlagChange,
        f,
        KOUKI,
        "UF-2",
        "20261125230100",
        &[release],
    );
}

/// The two ends of the format matrix: inputs in CSV/Shift_JIS with default outputs, and inputs
/// in XML/UTF-8 with XML/UTF-8 outputs (the `run` options that ask for them).
fn both_syntaxes() -> [(Format, TextEncoding, Vec<&'static str>); 2] {
    [
        (Format::Csv, TextEncoding::ShiftJis, vec![]),
        (
            Format::Xml,
            TextEncoding::Utf8,
            vec!["--output-format", "xml", "--output-encoding", "utf-8"],
        ),
    ]
}

#[test]
fn n_shard_processes_and_a_merge_equal_one_process() {
    for (format, encoding, args) in both_syntaxes() {
        let f = Files { format, encoding };
        let d = Deployment::new();
        night_1(&d.inbox(), &f);
        let id1 = d.run_both(&args);
        d.assert_streaming_reader_agrees();

        // the shards really split the union: every shard wrote some of it, none all of it
        let groups = |root: PathBuf| -> usize {
            files_under(&root.join("outbox"))
                .iter()
                .filter(|(n, _)| n.contains("SubscriberLinkage_"))
                .map(|(_, b)| {
                    let t = text_of(b);
                    t.matches("\r\n01,").count() + t.matches("<BasicInfo>").count()
                })
                .sum()
        };
        let all = groups(d.single());
        // the union's future-dated registrations without a hand-off are withheld until the
        // 国保 side answers their inquiry (R13): 12 of the 23 touched subscribers are written
        assert!(all >= 10, "{all}");
        for s in d.shards() {
            let n = groups(s);
            assert!(n > 0 && n < all, "{n} of {all}");
        }
        let r = d.merged().join("reports").join(&id1);
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(r.join("report.json")).unwrap()).unwrap();
        assert!(
            report["carries"].as_array().unwrap().len() >= 9,
            "{}",
            report["carries"]
        );
        // R13: the future-dated registrations nothing matches are withheld until answered
        let inq = report["summary"]["inquiries_withheld"].as_u64().unwrap();
        assert!(inq >= 9, "{}", report["summary"]);
        assert_eq!(
            report["worklists"]["review"],
            1 + inq,
            "the ambiguous pair and the inquiries: {}",
            std::fs::read_to_string(r.join("review.csv")).unwrap()
        );
        assert_eq!(report["summary"]["withheld"], 1 + inq);
        assert_eq!(report["pending_flags"].as_array().unwrap().len(), 1);
        assert_eq!(
            report["rejects"].as_array().unwrap().len(),
            1,
            "the replicated reject once: {}",
            report["rejects"]
        );
        assert_eq!(
            report["pending_handoffs"], 3,
            "person 27's hand-off (no registration in any shard) and person 6's ambiguous pair (in review)"
        );
        // R3: several candidates carry nothing, not even later in the run
        let to6 = union_key(6);
        assert!(
            !report["carries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["to_subscriber_key"] == to6.as_str()),
            "person 6 was carried: {}",
            report["carries"]
        );
        // FlagLinkage holds the insurer-wide rows once
        let flag_linkage = files_under(&d.merged().join("outbox"))
            .into_iter()
            .find(|(n, _)| n.contains(&format!("FlagLinkage_{KOUKI}_")))
            .map(|(_, b)| text_of(&b))
            .unwrap();
        assert_eq!(flag_linkage.matches("TM00000000000002").count(), 1, "{flag_linkage}");

        // an incomplete shard set is refused and writes nothing
        let partial = d.dir.path().join("partial");
        let o = merge(&d.shards()[..2], &partial);
        assert_eq!(o.status.code(), Some(2), "{}", out_text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("N = 3"), "{}", out_text(&o));
        assert!(files_under(&partial.join("outbox")).is_empty());
        assert!(files_under(&partial.join("reports")).is_empty());
        // merging again changes nothing and says so
        let o = merge(&d.shards(), &d.merged());
        assert!(o.status.success(), "{}", out_text(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("nothing to merge"));
        // a shard retried after its commit reruns with every file skipped: nothing to merge there
        let retry = run_at(
            &d.inbox(),
            &d.shard(1),
            &[args.as_slice(), &["--shard", "1/3"]].concat(),
        );
        // its withheld registrations (R13, unanswered) are tried again and withheld again
        assert_eq!(retry.status.code(), Some(5), "{}", out_text(&retry));
        let o = merge(&d.shards(), &d.merged());
        assert!(o.status.success(), "{}", out_text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("applied nothing"),
            "{}",
            out_text(&o)
        );
        let o = Command::new(BIN)
            .args(["merge-shards", "--run-id", run_id(&retry).trim_end_matches("-s1of3")])
            .args(d.shards().iter().flat_map(|s| [PathBuf::from("--from"), s.clone()]))
            .arg("--outbox")
            .arg(d.merged().join("outbox"))
            .arg("--reports")
            .arg(d.merged().join("reports"))
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(2),
            "asked for by id, it is refused: {}",
            out_text(&o)
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("incomplete"),
            "{}",
            out_text(&o)
        );

        // night 2, on the same ledgers, with night 1's files still in the inbox (skipped)
        night_2(&d.inbox(), &f);
        let id2 = d.run_both(&args);
        assert_ne!(id1, id2);
        d.assert_streaming_reader_agrees();
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.merged().join("reports").join(&id2).join("report.json")).unwrap())
                .unwrap();
        assert_eq!(report["summary"]["files_skipped"], 4);
        assert_eq!(
            report["pending_flags"].as_array().unwrap().len(),
            0,
            "applied with its enrollment"
        );
        assert_eq!(report["pending_handoffs"], 3, "person 6's pair waits in review");
        let linkage: String = files_under(&d.merged().join("outbox").join(&id2))
            .into_iter()
            .filter(|(n, _)| n.starts_with("SubscriberLinkage_"))
            .map(|(_, b)| text_of(&b))
            .collect();
        for i in [9, 11, 12] {
            let c = control_of(&linkage, &union_key(i)).expect("published again");
            assert_ne!((c.0.as_str(), c.1.as_str()), ("0", "0"), "person {i} carries the flags");
        }
    }
}

/// Replaces a published linkage file of a shard run and updates its MANIFEST.json and report.json
/// entries (size, SHA-256), so that only reading the file itself can tell what is wrong with it.
fn replace_shard_file(root: &Path, run_id: &str, name: &str, bytes: &[u8]) {
    std::fs::write(root.join("outbox").join(run_id).join(name), bytes).unwrap();
    for (path, key) in [
        (root.join("outbox").join(run_id).join("MANIFEST.json"), "files"),
        (root.join("reports").join(run_id).join("report.json"), "outputs"),
    ] {
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let e = v[key]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|e| e["name"] == name)
            .unwrap();
        e["bytes"] = bytes.len().into();
        e["sha256"] = hex(&Sha256::digest(bytes)).into();
        std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    }
}

#[test]
fn a_shard_file_out_of_key_order_or_truncated_stops_the_merge_and_publishes_nothing() {
    for (format, encoding, args) in both_syntaxes() {
        let f = Files { format, encoding };
        let d = Deployment::new();
        night_1(&d.inbox(), &f);
        let mut id = String::new();
        for i in 0..N {
            let s = format!("{i}/{N}");
            let o = run_at(&d.inbox(), &d.shard(i), &[args.as_slice(), &["--shard", &s]].concat());
            assert!(matches!(o.status.code(), Some(0 | 1 | 5)), "{}", out_text(&o));
            id = run_id(&o).trim_end_matches(&format!("-s{i}of{N}")).to_owned();
        }
        // a SubscriberLinkage file of a shard with at least three groups
        let (shard, run, name, original) = (0..N)
            .find_map(|i| {
                let run = format!("{id}-s{i}of{N}");
                files_under(&d.shard(i).join("outbox").join(&run))
                    .into_iter()
                    .find(|(n, b)| {
                        n.starts_with("SubscriberLinkage_") && read_whole(b).is_ok_and(|l| l.rows.len() >= 3)
                    })
                    .map(|(n, b)| (i, run, n, b))
            })
            .expect("a shard file with three groups");
        let file = read_whole(&original).unwrap();
        let LinkageRows::Subscribers(groups) = &file.rows else {
            unreachable!("a SubscriberLinkage file")
        };
        // the same groups with the second and third swapped, numbered and counted as run would
        let mut swapped = groups.clone();
        swapped.swap(1, 2);
        let mut out_of_order = Vec::new();
        StandardLayout {
            policy: UnmappablePolicy::Reject,
        }
        .subscriber_linkage(&file.header, &mut swapped.into_iter(), &mut out_of_order)
        .unwrap();
        // cut after the last group, as a copy that stopped there would be: well-formed up to the end
        let text = text_of(&original);
        let last_group_end = match format {
            Format::Csv => text.rfind("\r\nT,").unwrap() + 2,
            Format::Xml => text.rfind("</Subscriber>").unwrap() + "</Subscriber>\n".len(),
        };
        let truncated = original[..original.len() - (text.len() - last_group_end)].to_vec();
        let cases: [(&[u8], &str); 2] = [
            (&out_of_order, "is not in subscriber-key order"),
            (&truncated, "truncated"),
        ];
        for (bytes, why) in cases {
            replace_shard_file(&d.shard(shard), &run, &name, bytes);
            let o = merge(&d.shards(), &d.merged());
            assert_eq!(o.status.code(), Some(2), "{why}: {}", out_text(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains(why) && err.contains(&name), "{why}: {}", out_text(&o));
            for dir in ["outbox", "reports"] {
                let left: Vec<_> = std::fs::read_dir(d.merged().join(dir))
                    .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
                    .unwrap_or_default();
                assert!(left.is_empty(), "{why}: {dir} holds {left:?}");
            }
        }
        // the file as the shard wrote it: the merge goes through
        replace_shard_file(&d.shard(shard), &run, &name, &original);
        let o = merge(&d.shards(), &d.merged());
        assert!(matches!(o.status.code(), Some(0 | 1 | 5)), "{}", out_text(&o));
        assert!(
            d.merged()
                .join("outbox")
                .join(&id)
                .join(name.replace(&run, &id))
                .is_file()
        );
    }
}

#[test]
fn a_sharded_run_refuses_kokuho_and_kouki_in_one_ledger() {
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::Utf8,
    };
    let site = Site::new();
    let kokuho = acquisition(
        KOKUHO,
        &key(1),
        None,
        "1001",
        "19520110",
        "20100401",
        "03",
        "山田　花子",
    );
    let kouki = acquisition(
        KOUKI,
        &key(900_001),
        None,
        "1001",
        "19520110",
        "20270110",
        "01",
        "山田　花子",
    );
    write_file(
        &site.inbox(),
        "k",
        FileKind::SubscriberChange,
        &f,
        KOKUHO,
        "K-1",
        "20261101230000",
        std::slice::from_ref(&kokuho),
    );
    write_file(
        &site.inbox(),
        "u",
        FileKind::SubscriberChange,
        &f,
        KOUKI,
        "U-1",
        "20261101230000",
        &[kouki],
    );
    let enrollments = || dump(&site.p("ledger.sqlite"), "SELECT insurer FROM enrollment");
    for shard in ["0/1", "2/3"] {
        let o = site.run(&["--shard", shard]);
        assert_eq!(o.status.code(), Some(2), "{}", out_text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("国保") && err.contains("後期") && err.contains("Nothing was applied"),
            "{err}"
        );
        // refusing creates nothing: the new ledger, its lock file, outbox and reports go again
        for made in ["ledger.sqlite", "ledger.sqlite.lock", "outbox", "reports"] {
            assert!(!site.p(made).exists(), "{made} left by a refused run");
        }
    }
    // the unsharded run takes both (one ledger for both sides stays possible)
    let other = Site::new();
    std::fs::create_dir_all(other.inbox()).unwrap();
    for e in std::fs::read_dir(site.inbox()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, other.inbox().join(p.file_name().unwrap())).unwrap();
    }
    assert!(other.run(&[]).status.success());

    // the ledger counts too: a shard ledger holding 国保 refuses a 後期 inbox
    std::fs::remove_file(site.inbox().join("u.csv")).unwrap();
    let o = site.run(&["--shard", "0/1"]);
    assert!(o.status.success(), "{}", out_text(&o));
    std::fs::remove_dir_all(site.inbox()).unwrap();
    write_file(
        &site.inbox(),
        "u",
        FileKind::SubscriberChange,
        &f,
        KOUKI,
        "U-2",
        "20261102230000",
        &[acquisition(
            KOUKI,
            &key(900_002),
            None,
            "1002",
            "19520111",
            "20270111",
            "01",
            "山田　梅子",
        )],
    );
    let o = site.run(&["--shard", "0/1"]);
    assert_eq!(o.status.code(), Some(2), "{}", out_text(&o));
    assert_eq!(enrollments(), vec!["Text(\"00131045\")".to_owned()]);
    // and a shard ledger stays with its shard
    let o = site.run(&["--shard", "0/2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("belongs to shard 0/1"));
    let o = site.run(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--shard 0/1"));
    let o = Command::new(BIN)
        .args(["migrate", "--ledger"])
        .arg(site.p("ledger.sqlite"))
        .arg("--from")
        .arg(site.inbox())
        .arg("--reports")
        .arg(site.p("reports"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", out_text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("belongs to shard 0/1"));
    // usage errors of --shard itself
    for bad in ["3/3", "1", "x/2", "0/0"] {
        let o = site.run(&["--shard", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("I/N"), "{bad}");
    }
}

/// The 国保 side sharded too: each shard's `age-transition extract --shard` hand-offs feed the
/// union (itself sharded), and every flag is carried.
#[test]
fn sharded_kokuho_extracts_feed_a_sharded_union() {
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::ShiftJis,
    };
    let d = Deployment::new();
    // 国保: members turning 75 in January 2027, all flagged; two not turning 75 soon
    let mut members: Vec<_> = (1..=12)
        .map(|i| {
            acquisition(
                KOKUHO,
                &key(i),
                mn(i).as_deref(),
                &resident(i),
                &birth(i),
                "20100401",
                "03",
                "国保　花子",
            )
        })
        .collect();
    members.push(acquisition(
        KOKUHO,
        &key(13),
        None,
        "5013",
        "19600101",
        "20100401",
        "03",
        "国保　松子",
    ));
    members.push(acquisition(
        KOKUHO,
        &key(14),
        None,
        "5014",
        "19600102",
        "20100401",
        "03",
        "国保　竹子",
    ));
    write_file(
        &d.inbox(),
        "SubscriberChange_k",
        FileKind::SubscriberChange,
        &f,
        KOKUHO,
        "K-1",
        "20261101230000",
        &members,
    );
    let mut flags = Vec::new();
    let mut expected = BTreeMap::new();
    for i in 1..=14u64 {
        let si = ["1", "2", "0"][(i % 3) as usize];
        let nd = i.is_multiple_of(2) || si == "0";
        if si != "0" {
            flags.push(flag_set(KOKUHO, &key(i), "3", si, "20261101090000"));
        }
        if nd {
            flags.push(flag_set(KOKUHO, &key(i), "2", "", "20261101090000"));
        }
        if i <= 12 {
            expected.insert(union_key(i), (si.to_owned(), if nd { "1" } else { "0" }.to_owned()));
        }
    }
    write_file(
        &d.inbox(),
        "FlagChange_k",
        FileKind::FlagChange,
        &f,
        KOKUHO,
        "KF-1",
        "20261101230100",
        &flags,
    );
    // the 国保 side sharded equals the 国保 side unsharded
    d.run_both(&[]);

    // one extract per 国保 shard
    let handoff = d.dir.path().join("handoff");
    let extract = |ledger: &Path, shard: Option<String>| {
        let mut c = Command::new(BIN);
        c.args(["age-transition", "extract", "--as-of", "20261201", "--ledger"])
            .arg(ledger)
            .arg("--out")
            .arg(&handoff)
            .arg("--reports")
            .arg(ledger.parent().unwrap().join("reports"));
        if let Some(s) = shard {
            c.args(["--shard", &s]);
        }
        c.output().unwrap()
    };
    let o = extract(&d.shard(0).join("ledger.sqlite"), None);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a shard ledger needs --shard: {}",
        out_text(&o)
    );
    let o = extract(&d.shard(0).join("ledger.sqlite"), Some(format!("1/{N}")));
    assert_eq!(o.status.code(), Some(2), "and the right one: {}", out_text(&o));
    for i in 0..N {
        let o = extract(&d.shard(i).join("ledger.sqlite"), Some(format!("{i}/{N}")));
        assert!(o.status.success(), "{}", out_text(&o));
    }
    let files: Vec<PathBuf> = std::fs::read_dir(&handoff)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), N as usize, "one hand-off file per shard");
    let records: usize = files
        .iter()
        .map(|p| {
            text_of(&std::fs::read(p).unwrap())
                .lines()
                .filter(|l| l.starts_with("D,"))
                .count()
        })
        .sum();
    assert_eq!(
        records, 12,
        "every flagged member turning 75, in exactly one shard's file"
    );

    // the union: every shard's hand-off file and the registrations, sharded and not
    let union = Deployment::new();
    std::fs::create_dir_all(union.inbox()).unwrap();
    for p in &files {
        std::fs::copy(p, union.inbox().join(p.file_name().unwrap())).unwrap();
    }
    let regs: Vec<_> = (1..=12)
        .map(|i| {
            let mut r = acquisition(
                KOUKI,
                &union_key(i),
                mn(i).as_deref(),
                &resident(i),
                &birth(i),
                &transition(i),
                "01",
                "国保　花子",
            );
            r.insert("EffectiveDate", "20261125".into());
            r
        })
        .collect();
    write_file(
        &union.inbox(),
        "SubscriberChange_u",
        FileKind::SubscriberChange,
        &f,
        KOUKI,
        "U-1",
        "20261125230000",
        &regs,
    );
    let id = union.run_both(&[]);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(union.merged().join("reports").join(&id).join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["carries"].as_array().unwrap().len(), 12);
    assert_eq!(report["pending_handoffs"], 0, "every hand-off matched in some shard");
    let linkage = files_under(&union.merged().join("outbox").join(&id))
        .into_iter()
        .find(|(n, _)| n.starts_with("SubscriberLinkage_"))
        .map(|(_, b)| text_of(&b))
        .unwrap();
    for (k, (si, nd)) in expected {
        let c = control_of(&linkage, &k).unwrap();
        assert_eq!((c.0, c.1), (si, nd), "subscriber {k}");
    }
}

/// R3 on the late path: a registration published in an earlier run, then two hand-offs of two
/// different 国保 enrollments of the same person in one later run. Several candidates: no carry,
/// the registration goes to review, both hand-offs stay pending — in a single process and in
/// shards alike. A single hand-off in a later night carries.
#[test]
fn two_late_handoffs_for_one_registration_carry_nothing() {
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::Utf8,
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("site");
    let inbox = dir.path().join("inbox");
    // night 1: the registrations of persons 4 and 5, no hand-off yet
    write_file(
        &inbox,
        "SubscriberChange_r",
        FileKind::SubscriberChange,
        &f,
        KOUKI,
        "R-1",
        "20261120230000",
        &[
            registration(4, "01", &transition(4), &birth(4)),
            registration(5, "01", &transition(5), &birth(5)),
        ],
    );
    let o = run_at(&inbox, &root, &[]);
    // nothing matches them yet: inquired and withheld (R13), critical
    assert_eq!(o.status.code(), Some(5), "{}", out_text(&o));
    // night 2: two 国保 enrollments' hand-offs for person 4, one for person 5
    write_file(
        &inbox,
        "AgeTransitionHandoff_h",
        FileKind::AgeTransitionHandoff,
        &f,
        KOKUHO,
        "H-1",
        "20261121230000",
        &[
            handoff(4, 4, &birth(4), &transition(4)),
            handoff(4, 104, &birth(4), &transition(4)),
            handoff(5, 5, &birth(5), &transition(5)),
        ],
    );
    let o = run_at(&inbox, &root, &[]);
    // person 4's registration is withheld (ambiguous, flagged): critical
    assert_eq!(o.status.code(), Some(5), "{}", out_text(&o));
    // this run's report (run ids are not in time order)
    let id = run_id(&o);
    let json = std::fs::read(root.join("reports").join(&id).join("report.json")).unwrap();
    let r: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let carried_to: Vec<&str> = r["carries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["to_subscriber_key"].as_str().unwrap())
        .collect();
    assert_eq!(carried_to, [union_key(5).as_str()], "{}", r["carries"]);
    // person 4: the late match carries nothing, and the registration (never published: it was
    // withheld while its inquiry was open, R13) is withheld again as ambiguous
    let review = std::fs::read_to_string(root.join("reports").join(&id).join("review.csv")).unwrap();
    // one row: the hold (the late match no longer lists it a second time)
    assert_eq!(r["worklists"]["review"], 1, "{review}");
    assert!(review.lines().skip(1).all(|l| l.contains(&union_key(4))), "{review}");
    assert_eq!(r["pending_handoffs"], 2, "person 4's pair waits in review");
}

/// merge-shards lists rejects as one process does (by input file, then RecordSequence), not
/// shard by shard.
#[test]
fn merged_rejects_are_in_the_order_of_one_process() {
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::Utf8,
    };
    let d = Deployment::new();
    let regs: Vec<_> = (1..=12)
        .map(|i| {
            // reason 03: no hand-off expected, so no inquiry holds them (R13)
            let mut r = registration(i, "03", "20200401", &birth(i));
            if i % 2 == 0 {
                r.insert("Sex1", "9".into()); // E_CODE: the record is rejected
            }
            r
        })
        .collect();
    write_file(
        &d.inbox(),
        "SubscriberChange_u1",
        FileKind::SubscriberChange,
        &f,
        KOUKI,
        "U-1",
        "20261120230000",
        &regs,
    );
    let single = run_at(&d.inbox(), &d.single(), &[]);
    assert_eq!(single.status.code(), Some(1), "{}", out_text(&single));
    let id = run_id(&single);
    for i in 0..N {
        let s = format!("{i}/{N}");
        let o = run_at(&d.inbox(), &d.shard(i), &["--shard", &s]);
        assert!(matches!(o.status.code(), Some(0 | 1)), "{}", out_text(&o));
    }
    let m = merge(&d.shards(), &d.merged());
    assert_eq!(m.status.code(), Some(1), "{}", out_text(&m));
    let rejects = |root: PathBuf| -> Vec<serde_json::Value> {
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join("reports").join(&id).join("report.json")).unwrap())
                .unwrap();
        r["rejects"].as_array().unwrap().clone()
    };
    let (one, merged) = (rejects(d.single()), rejects(d.merged()));
    let seqs: Vec<u64> = merged.iter().map(|e| e["record_sequence"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [2, 4, 6, 8, 10, 12], "{merged:?}");
    assert_eq!(one, merged);
    // rejects.csv likewise
    let csv = |root: PathBuf| std::fs::read(root.join("reports").join(&id).join("rejects.csv")).unwrap();
    assert_eq!(csv(d.single()), csv(d.merged()));
}
