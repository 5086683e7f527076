//! The XSDs under `xsd/` against real files: every sample XML and every generated XML must
//! validate with `xmllint --schema`; XML derived to break one rule each must not.
//!
//! Shift_JIS files are transcoded to UTF-8 before they reach xmllint: libxml2's "Shift_JIS"
//! converter (iconv/ICU) is strict JIS X 0208 and refuses the CP932 extensions (髙, 﨑, ①) that
//! the spec's Shift_JIS (= Windows-31J) allows. The schema constrains content, not bytes, so
//! validating the decoded text is the same check.

mod common;

use nhi_linkage::domain::{FileKind, InsurerNumber, Timestamp};
use nhi_linkage::formats::writer::{RecordWriter, UnmappablePolicy};
use nhi_linkage::formats::{FileHeader, Format, TextEncoding};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// xmllint must be there: a test that skipped the schemas would pass without checking any. A
/// missing xmllint fails every XSD test with the way to install it (CI installs it).
fn require_xmllint() {
    require_program("xmllint");
}

fn require_program(program: &str) {
    let ok = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{program} is not installed: the XSD tests need it and fail without it (they never skip). \
         Install libxml2-utils: apt-get install -y libxml2-utils (Debian/Ubuntu), \
         dnf install libxml2 (Fedora), brew install libxml2 (macOS)"
    );
}

/// For tests written with `if !have_xmllint() { return; }`: never returns false, fails instead.
#[allow(dead_code)]
fn have_xmllint() -> bool {
    require_xmllint();
    true
}

#[test]
fn a_missing_xmllint_fails_instead_of_skipping() {
    let e = std::panic::catch_unwind(|| require_program("xmllint-that-is-not-installed"))
        .expect_err("a missing xmllint must fail the test");
    let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("apt-get install -y libxml2-utils"), "{msg}");
}

/// The schema for a file: from its root element (`<SubscriberChangeFile …>`).
fn schema_for(xml: &str) -> PathBuf {
    let start = xml.find("?>").map_or(0, |i| i + 2);
    let rest = xml[start..].trim_start().strip_prefix('<').expect("root element");
    let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    assert!(FileKind::from_root(&name).is_some(), "unknown root element {name}");
    root().join("xsd").join(format!("{name}.xsd"))
}

/// UTF-8 text of an XML file, decoding Shift_JIS (CP932) when the prolog says so.
fn utf8_text(bytes: &[u8]) -> (String, bool) {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(100)]).to_string();
    if head.contains("encoding=\"Shift_JIS\"") {
        let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(bytes);
        assert!(!bad, "invalid CP932");
        (text.replacen("encoding=\"Shift_JIS\"", "encoding=\"UTF-8\"", 1), true)
    } else {
        (String::from_utf8(bytes.to_vec()).expect("UTF-8 XML"), false)
    }
}

/// Runs xmllint on XML text given on stdin; returns (valid, xmllint's output).
fn xmllint_text(xsd: &Path, xml: &str) -> (bool, String) {
    let mut child = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(xsd)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xmllint runs");
    child.stdin.take().unwrap().write_all(xml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Validates a file on disk: UTF-8 files are given to xmllint as they are.
fn xmllint_file(path: &Path) -> (bool, String) {
    let bytes = std::fs::read(path).unwrap();
    let (text, transcoded) = utf8_text(&bytes);
    let xsd = schema_for(&text);
    if transcoded {
        return xmllint_text(&xsd, &text);
    }
    let out = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(&xsd)
        .arg(path)
        .output()
        .expect("xmllint runs");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn xml_files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            xml_files_under(&p, out);
        } else if p.extension().is_some_and(|x| x == "xml") {
            out.push(p);
        }
    }
}

#[test]
fn every_sample_xml_validates() {
    require_xmllint();
    let mut files = Vec::new();
    for sub in ["inbox", "formats"] {
        xml_files_under(&root().join("samples").join(sub), &mut files);
    }
    assert!(files.len() >= 12, "sample XML files found: {}", files.len());
    for f in files {
        let (ok, msg) = xmllint_file(&f);
        assert!(ok, "{} must validate:\n{msg}", f.display());
    }
}

/// A valid SubscriberChange document to derive broken ones from.
fn subscriber_change_sample() -> String {
    let p = root().join("samples/formats/xml/utf-8/SubscriberChange_00131045_0340.xml");
    std::fs::read_to_string(p).unwrap()
}

fn must_fail(name: &str, xml: &str, original: &str) {
    assert_ne!(xml, original, "{name}: the derivation changed nothing");
    let (ok, msg) = xmllint_text(&schema_for(original), xml);
    assert!(!ok, "{name}: must be rejected by the schema");
    assert!(
        msg.contains("fails to validate") || msg.contains("error"),
        "{name}: {msg}"
    );
}

fn must_pass(name: &str, xml: &str, original: &str) {
    assert_ne!(xml, original, "{name}: the derivation changed nothing");
    let (ok, msg) = xmllint_text(&schema_for(original), xml);
    assert!(ok, "{name}: must validate:\n{msg}");
}

#[test]
fn derived_invalid_inputs_are_rejected() {
    require_xmllint();
    let sc = subscriber_change_sample();
    let (ok, msg) = xmllint_text(&schema_for(&sc), &sc);
    assert!(ok, "{msg}");

    let cases: Vec<(&str, String)> = vec![
        (
            "unknown element",
            sc.replacen("</Name>\n", "</Name>\n    <Nickname>タロちゃん</Nickname>\n", 1),
        ),
        (
            "out-of-order elements",
            sc.replacen(
                "    <Sex1>1</Sex1>\n    <Birthdate>19680412</Birthdate>\n",
                "    <Birthdate>19680412</Birthdate>\n    <Sex1>1</Sex1>\n",
                1,
            ),
        ),
        (
            "bad ChangeType",
            sc.replacen("<ChangeType>1</ChangeType>", "<ChangeType>4</ChangeType>", 1),
        ),
        (
            "ReasonOfQualification without its leading zero",
            sc.replacen("<ReasonOfQualification>04<", "<ReasonOfQualification>4<", 1),
        ),
        ("missing FileTrailer", {
            let a = sc.find("  <FileTrailer>").unwrap();
            let b = sc.find("</FileTrailer>\n").unwrap() + "</FileTrailer>\n".len();
            format!("{}{}", &sc[..a], &sc[b..])
        }),
        (
            "month 13",
            sc.replacen("<Birthdate>19680412<", "<Birthdate>19681312<", 1),
        ),
        (
            "full-width digits in a key",
            sc.replacen("<SubscriberKey>131045", "<SubscriberKey>１31045", 1),
        ),
        (
            "15-digit SubscriberKey",
            sc.replacen("<SubscriberKey>1310450", "<SubscriberKey>131045", 1),
        ),
        (
            "missing RecordSequence",
            sc.replacen("    <RecordSequence>1</RecordSequence>\n", "", 1),
        ),
        (
            "RecordSequence 0",
            sc.replacen("<RecordSequence>1<", "<RecordSequence>0<", 1),
        ),
        (
            "one-digit branch",
            sc.replacen("<InsuredBranchNumber>01<", "<InsuredBranchNumber>1<", 1),
        ),
        (
            "FileHeader field missing",
            sc.replacen("    <FileSequence>340</FileSequence>\n", "", 1),
        ),
        (
            "other namespace",
            sc.replacen("urn:nhi-linkage:v1", "urn:nhi-linkage:v2", 1),
        ),
        (
            "Name over 100 characters",
            sc.replacen("<Name>山田　太郎<", &format!("<Name>{}<", "山".repeat(101)), 1),
        ),
        (
            "FileIdentifier over 40",
            sc.replacen("<FileIdentifier>KK", &format!("<FileIdentifier>{}", "K".repeat(40)), 1),
        ),
    ];
    for (name, xml) in &cases {
        must_fail(name, xml, &sc);
    }

    // empty = absent, and the 2-space right-aligned insurer number, are allowed
    must_pass(
        "empty optional element",
        &sc.replacen(
            "    <PostNumber>160-0023</PostNumber>\n",
            "    <PostNumber></PostNumber>\n",
            1,
        ),
        &sc,
    );
    must_pass(
        "space-aligned insurer",
        &sc.replacen("<InsurerNumber>00131045<", "<InsurerNumber>  131045<", 1),
        &sc,
    );
    must_pass(
        "unpadded 6-digit insurer",
        &sc.replacen("<InsurerNumber>00131045<", "<InsurerNumber>131045<", 1),
        &sc,
    );
    must_pass(
        "post number without hyphen",
        &sc.replacen("<PostNumber>160-0023<", "<PostNumber>1600023<", 1),
        &sc,
    );

    let read = |name: &str| std::fs::read_to_string(root().join("samples/formats/xml/utf-8").join(name)).unwrap();
    let fk = read("Fukuhon_00131045_0343.xml");
    must_fail(
        "Items before DisclosureClassification",
        &fk.replacen(
            "    <DisclosureClassification>0</DisclosureClassification>\n    <Items>",
            "    <Items>",
            1,
        )
        .replacen(
            "    </Items>\n",
            "    </Items>\n    <DisclosureClassification>0</DisclosureClassification>\n",
            1,
        ),
        &fk,
    );
    must_fail(
        "Item without Value",
        &fk.replacen("<Value>00131045</Value>", "", 1),
        &fk,
    );
    must_fail(
        "bad DisclosureClassification",
        &fk.replacen("<DisclosureClassification>0<", "<DisclosureClassification>2<", 1),
        &fk,
    );
    let fc = read("FlagChange_00131045_0342.xml");
    must_fail("bad FlagType", &fc.replacen("<FlagType>3<", "<FlagType>4<", 1), &fc);
    must_fail("bad Source", &fc.replacen("<Source>2<", "<Source>5<", 1), &fc);
    must_fail("bad InfoCode", &fc.replacen("<InfoCode>TM", "<InfoCode>TX", 1), &fc);
    must_fail(
        "timestamp hour 24",
        &fc.replacen("<EffectiveTime>20260610101200<", "<EffectiveTime>20260610241200<", 1),
        &fc,
    );
    let ho = read("AgeTransitionHandoff_00131045_0344.xml");
    must_fail(
        "self-info column 3",
        &ho.replacen(
            "<SelfInfoProvisionProhibitedFlg>2<",
            "<SelfInfoProvisionProhibitedFlg>3<",
            1,
        ),
        &ho,
    );
    must_fail(
        "non-disclosure column 2",
        &ho.replacen("<NonDisclosureFlg>1<", "<NonDisclosureFlg>2<", 1),
        &ho,
    );
}

fn linkage_header(kind: FileKind) -> FileHeader {
    FileHeader {
        kind,
        file_identifier: format!("OUT-{}", kind.name()),
        sender: InsurerNumber::parse("39131040").unwrap(),
        creation_time: Timestamp::parse("20261201013000").unwrap(),
        file_sequence: 1,
        format: Format::Xml,
        encoding: TextEncoding::Utf8,
    }
}

#[test]
fn output_kinds_validate() {
    require_xmllint();
    // FlagLinkage and FukuhonLinkage share the §3 shape, written by RecordWriter
    let mut w = RecordWriter::start(
        Vec::new(),
        linkage_header(FileKind::FlagLinkage),
        UnmappablePolicy::Reject,
    )
    .unwrap();
    w.write(
        &[
            "1",
            "00131045",
            "1310450004700444",
            "TM00000000000002",
            "1",
            "1",
            "",
            "20261125164000",
        ],
        &[],
    )
    .unwrap();
    w.write(
        &["2", "00131045", "", "TM00000000000004", "1", "1", "", "20261130090000"],
        &[],
    )
    .unwrap();
    let (fl, _, _) = w.finish().unwrap();
    let fl = String::from_utf8(fl).unwrap();
    let (ok, msg) = xmllint_text(&schema_for(&fl), &fl);
    assert!(ok, "{msg}\n{fl}");
    must_fail("FlagValue 2", &fl.replacen("<FlagValue>1<", "<FlagValue>2<", 1), &fl);

    let mut w = RecordWriter::start(
        Vec::new(),
        linkage_header(FileKind::FukuhonLinkage),
        UnmappablePolicy::Reject,
    )
    .unwrap();
    w.write(
        &[
            "1",
            "1",
            "20261130",
            "00131045",
            "1310450004700037",
            "TM00000000000001",
            "0",
        ],
        &[("001", "00131045"), ("002", "20180401"), ("004", "1")],
    )
    .unwrap();
    w.write(
        &[
            "2",
            "3",
            "20261130",
            "00131045",
            "1310450004700777",
            "TM00000000000004",
            "",
        ],
        &[],
    )
    .unwrap();
    let (fk, _, _) = w.finish().unwrap();
    let fk = String::from_utf8(fk).unwrap();
    let (ok, msg) = xmllint_text(&schema_for(&fk), &fk);
    assert!(ok, "{msg}\n{fk}");

    // SubscriberLinkage: the grouped form of §4, as documented in xsd/SubscriberLinkageFile.xsd
    let group = |n: u32, code: &str, flags: (&str, &str, &str), quals: &[(&str, &str, &str)]| {
        let mut s = format!(
            "  <Subscriber>\n    <BasicInfo><RecordIdentificationNumber>{}</RecordIdentificationNumber><ProcessingCode>{code}</ProcessingCode><InsurerNumber>39131040</InsurerNumber><SubscriberKey>39131040520003{n:02}</SubscriberKey><IndividualNumber>812437116118</IndividualNumber><Name>田中　和子</Name><NameKana>ﾀﾅｶ ｶｽﾞｺ</NameKana><Sex1>2</Sex1><Birthdate>19520114</Birthdate><PostNumber>161-0033</PostNumber><Address>東京都新宿区下落合三丁目１７番２２号</Address></BasicInfo>\n    <ProvisionControl><RecordIdentificationNumber>{}</RecordIdentificationNumber><SelfInfoProvisionProhibitedFlg>{}</SelfInfoProvisionProhibitedFlg><NonDisclosureFlg>{}</NonDisclosureFlg><AutoResponseProhibitedFlg>{}</AutoResponseProhibitedFlg></ProvisionControl>\n",
            n * 10 + 1,
            n * 10 + 2,
            flags.0,
            flags.1,
            flags.2
        );
        for (i, (q, d, r)) in quals.iter().enumerate() {
            let opt = |tag: &str, v: &str| {
                if v.is_empty() {
                    String::new()
                } else {
                    format!("<{tag}>{v}</{tag}>")
                }
            };
            s += &format!(
                "    <Qualification><RecordIdentificationNumber>{}</RecordIdentificationNumber><InsurerNumber>39131040</InsurerNumber><InsuredIdentificationNumber>10400049</InsuredIdentificationNumber><InsuredBranchNumber>00</InsuredBranchNumber><QualificationDate>{q}</QualificationDate>{}{}<PersonalFamilyClassification>1</PersonalFamilyClassification></Qualification>\n",
                n * 10 + 3 + i as u32,
                opt("DisqualificationDate", d),
                opt("ReasonOfLoss", r)
            );
        }
        s + "  </Subscriber>\n"
    };
    let doc = |groups: &str| {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SubscriberLinkageFile xmlns=\"urn:nhi-linkage:v1\">\n  <FileHeader>\n    <FileIdentifier>SL-20261201-1</FileIdentifier>\n    <SenderInsurerNumber>39131040</SenderInsurerNumber>\n    <CreationTime>20261201013000</CreationTime>\n    <FileSequence>1</FileSequence>\n  </FileHeader>\n{groups}  <FileTrailer>\n    <GroupCount>2</GroupCount>\n    <RowCount>7</RowCount>\n  </FileTrailer>\n</SubscriberLinkageFile>\n"
        )
    };
    let sl = doc(&(group(1, "11", ("2", "1", "0"), &[("20270114", "", "")])
        + &group(
            2,
            "12",
            ("0", "0", "0"),
            &[("20250402", "20261122", "01"), ("20261201", "", "")],
        )));
    let (ok, msg) = xmllint_text(&schema_for(&sl), &sl);
    assert!(ok, "{msg}\n{sl}");
    let pc_start = sl.find("    <ProvisionControl>").unwrap();
    let pc_end = sl[pc_start..].find('\n').unwrap() + pc_start + 1;
    let pc = &sl[pc_start..pc_end];
    must_fail("ProvisionControl missing", &sl.replacen(pc, "", 1), &sl);
    must_fail("ProvisionControl twice", &sl.replacen(pc, &format!("{pc}{pc}"), 1), &sl);
    let q_start = sl.find("    <Qualification>").unwrap();
    let q_end = sl[q_start..].find('\n').unwrap() + q_start + 1;
    must_fail("no Qualification", &sl.replacen(&sl[q_start..q_end], "", 1), &sl);
    must_fail(
        "ProcessingCode 13",
        &sl.replacen("<ProcessingCode>11<", "<ProcessingCode>13<", 1),
        &sl,
    );
    must_fail(
        "flag column empty",
        &sl.replacen("<NonDisclosureFlg>1<", "<NonDisclosureFlg><", 1),
        &sl,
    );
    must_fail("Name missing", &sl.replacen("<Name>田中　和子</Name>", "", 1), &sl);
    must_fail(
        "trailer of the §3 shape",
        &sl.replacen("<GroupCount>2</GroupCount>", "<RecordCount>2</RecordCount>", 1),
        &sl,
    );
}

#[test]
fn generated_files_validate() {
    require_xmllint();
    for enc in ["utf-8", "shift_jis"] {
        let dir = tempfile::tempdir().unwrap();
        common::generate(200, "11", &["--encoding", enc], dir.path());
        let mut files = Vec::new();
        xml_files_under(dir.path(), &mut files);
        assert_eq!(files.len(), 17, "4 municipalities × 4 kinds + the union's file");
        let mut kinds = std::collections::BTreeSet::new();
        for f in &files {
            let (ok, msg) = xmllint_file(f);
            assert!(ok, "{} must validate:\n{msg}", f.display());
            kinds.insert(
                f.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .split('_')
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        }
        assert_eq!(kinds.len(), 4, "{kinds:?}");
    }
    // the generator's options and a delta (with its union registrations and hand-offs)
    for extra in [
        &["--flagged-ratio", "0.3", "--fukuhon-per-subscriber", "4"][..],
        &["--flagged-ratio", "0.3", "--delta", "150"][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        common::generate(200, "11", extra, dir.path());
        let mut files = Vec::new();
        xml_files_under(dir.path(), &mut files);
        assert!(!files.is_empty());
        for f in &files {
            let (ok, msg) = xmllint_file(f);
            assert!(ok, "{} must validate:\n{msg}", f.display());
        }
    }
}

/// Every XML file the engine writes (linkage files of a run over the sample inbox, in both
/// encodings, and the age-transition hand-off) validates against its schema.
#[test]
fn engine_outputs_validate() {
    require_xmllint();
    let bin = env!("CARGO_BIN_EXE_nhi-linkage");
    for enc in ["utf-8", "shift_jis"] {
        let dir = tempfile::tempdir().unwrap();
        let p = |s: &str| dir.path().join(s);
        let out = Command::new(bin)
            .args([
                "run",
                "--as-of",
                "20261201",
                "--output-format",
                "xml",
                "--output-encoding",
                enc,
                "--unmappable",
                "replace",
                "--inbox",
            ])
            .arg(root().join("samples/inbox"))
            .arg("--outbox")
            .arg(p("outbox"))
            .arg("--reports")
            .arg(p("reports"))
            .arg("--ledger")
            .arg(p("ledger.sqlite"))
            .arg("--init-ledger")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let ext = Command::new(bin)
            .args([
                "age-transition",
                "extract",
                "--as-of",
                "20261201",
                "--format",
                "xml",
                "--unmappable",
                "replace",
                "--encoding",
                enc,
            ])
            .arg("--ledger")
            .arg(p("ledger.sqlite"))
            .arg("--out")
            .arg(p("handoff"))
            .arg("--reports")
            .arg(p("reports"))
            .output()
            .unwrap();
        assert!(
            ext.status.code() == Some(0) || ext.status.code() == Some(5),
            "{}",
            String::from_utf8_lossy(&ext.stderr)
        );
        let mut files = Vec::new();
        xml_files_under(&p("outbox"), &mut files);
        xml_files_under(&p("handoff"), &mut files);
        let kinds: std::collections::BTreeSet<String> = files
            .iter()
            .map(|f| {
                f.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .split('_')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        for k in [
            "SubscriberLinkage",
            "FlagLinkage",
            "FukuhonLinkage",
            "AgeTransitionHandoff",
        ] {
            assert!(kinds.contains(k), "{enc}: no {k} written");
        }
        for f in files {
            let (ok, msg) = xmllint_file(&f);
            assert!(ok, "{enc}: {} does not validate: {msg}", f.display());
        }
    }
}

/// R13: the inquiry the union's run writes (report folder) and the answer `age-transition
/// answer` writes validate against their schemas, in both encodings (the sample night split
/// into a 国保 ledger and a union ledger).
#[test]
fn inquiry_and_answer_validate() {
    require_xmllint();
    let bin = env!("CARGO_BIN_EXE_nhi-linkage");
    for enc in ["utf-8", "shift_jis"] {
        let dir = tempfile::tempdir().unwrap();
        let p = |s: &str| dir.path().join(s);
        for (side, pat) in [("kokuho", "_00131045_"), ("union", "_39131040_")] {
            std::fs::create_dir_all(p(side).join("inbox")).unwrap();
            for e in std::fs::read_dir(root().join("samples/inbox")).unwrap() {
                let f = e.unwrap().path();
                if f.file_name().unwrap().to_string_lossy().contains(pat) {
                    std::fs::copy(&f, p(side).join("inbox").join(f.file_name().unwrap())).unwrap();
                }
            }
            let out = Command::new(bin)
                .args([
                    "run",
                    "--as-of",
                    "20261201",
                    "--output-format",
                    "xml",
                    "--output-encoding",
                    enc,
                ])
                .args(["--unmappable", "replace", "--init-ledger", "--inbox"])
                .arg(p(side).join("inbox"))
                .arg("--outbox")
                .arg(p(side).join("outbox"))
                .arg("--reports")
                .arg(p(side).join("reports"))
                .arg("--ledger")
                .arg(p(side).join("ledger.sqlite"))
                .output()
                .unwrap();
            // the union's night withholds 渡辺　清 until 国保 answers (exit 5, critical)
            assert!(
                matches!(out.status.code(), Some(0) | Some(5)),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let reports = p("union").join("reports");
        let run_dir = std::fs::read_dir(&reports)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|d| !d.file_name().unwrap().to_string_lossy().starts_with('.'))
            .unwrap();
        let ans = Command::new(bin)
            .args(["age-transition", "answer", "--as-of", "20261202", "--ledger"])
            .arg(p("kokuho").join("ledger.sqlite"))
            .arg("--inquiry")
            .arg(&run_dir)
            .arg("--out")
            .arg(p("answers"))
            .output()
            .unwrap();
        assert!(ans.status.success(), "{}", String::from_utf8_lossy(&ans.stderr));
        let mut files = Vec::new();
        xml_files_under(&run_dir, &mut files);
        xml_files_under(&p("answers"), &mut files);
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with("AgeTransitionInquiry_")),
            "{enc}: {names:?}"
        );
        assert!(
            names.iter().any(|n| n.starts_with("AgeTransitionHandoff_")),
            "{enc}: {names:?}"
        );
        for f in files {
            let (ok, msg) = xmllint_file(&f);
            assert!(ok, "{enc}: {} does not validate: {msg}", f.display());
        }
    }
}
