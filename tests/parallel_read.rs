//! Reading a file in pieces on several threads (`formats::parallel`) gives exactly what the serial
//! reader gives: the same outcomes in the same order, the same summary (header, counts, SHA-256,
//! size) and, for rejected files, the same diagnostics. Files of every shape go through the piece
//! path here with tiny piece sizes (down to one byte, so every record boundary is a cut and every
//! byte offset is a target), on pools of 1 to 4 threads.

use nhi_linkage::domain::{Catalog, Date};
use nhi_linkage::formats::{
    Format, Limits, ParallelConfig, ReadOptions, ReadPath, RecordOutcome, TextEncoding, read_input_with,
};
use nhi_linkage::synth::{self, GenerateOptions};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

static CATALOG: LazyLock<Catalog> = LazyLock::new(Catalog::default_catalog);

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

static POOLS: LazyLock<Vec<rayon::ThreadPool>> = LazyLock::new(|| (1..=4).map(pool).collect());

/// Debug of what a read hands over, and how the file was read: the summary and every outcome,
/// or for a rejected file its diagnostics and header (the caller discards the outcomes it was
/// handed before, and how many those are depends even for the serial reader on its buffers).
fn read(path: &Path, limits: Limits, config: &ParallelConfig) -> (String, bool, ReadPath) {
    let opts = ReadOptions {
        catalog: &CATALOG,
        limits,
    };
    let mut out: Vec<RecordOutcome> = Vec::new();
    let (r, how) = read_input_with(path, "f", &opts, &mut |o| out.push(o), config);
    match r {
        Ok(s) => {
            assert_eq!(s.records, out.len() as u64);
            (format!("{s:#?}\n{out:#?}"), true, how)
        }
        Err(e) => (format!("{e:#?}"), false, how),
    }
}

fn serial(path: &Path, limits: Limits) -> (String, bool) {
    let config = ParallelConfig {
        min_file_bytes: u64::MAX,
        ..Default::default()
    };
    let (text, ok, how) = read(path, limits, &config);
    assert_eq!(how, ReadPath::Serial);
    (text, ok)
}

fn pieces(chunk_bytes: usize, window: Option<usize>) -> ParallelConfig {
    ParallelConfig {
        min_file_bytes: 0,
        chunk_bytes,
        window,
        single_thread: true,
    }
}

/// Panics with the first differing line.
fn assert_same(want: &str, got: &str, what: &str) {
    if want == got {
        return;
    }
    let (w, g): (Vec<_>, Vec<_>) = (want.lines().collect(), got.lines().collect());
    let i = w
        .iter()
        .zip(&g)
        .position(|(a, b)| a != b)
        .unwrap_or(w.len().min(g.len()));
    let from = i.saturating_sub(5);
    panic!(
        "{what}: differs from the serial reader at line {i}\n--- serial\n{}\n--- pieces\n{}",
        w[from..(i + 5).min(w.len())].join("\n"),
        g[from..(i + 5).min(g.len())].join("\n")
    );
}

/// Reads `path` in pieces of each size on the given pools and compares with the serial reader.
/// A file the serial reader accepts must be read in pieces without falling back.
fn check(path: &Path, limits: Limits, chunks: &[usize], pools: &[usize], windows: &[Option<usize>]) -> Vec<ReadPath> {
    compare(path, limits, chunks, pools, windows, true)
}

/// [`check`]; `strict: false` lets a file the serial reader accepts fall back.
fn compare(
    path: &Path,
    limits: Limits,
    chunks: &[usize],
    pools: &[usize],
    windows: &[Option<usize>],
    strict: bool,
) -> Vec<ReadPath> {
    let (want, ok) = serial(path, limits);
    let mut paths = Vec::new();
    for &chunk in chunks {
        for &threads in pools {
            for &window in windows {
                let (got, _, how) = POOLS[threads - 1].install(|| read(path, limits, &pieces(chunk, window)));
                let what = format!(
                    "{} (chunk {chunk}, {threads} threads, window {window:?}, {how:?})",
                    path.display()
                );
                assert_same(&want, &got, &what);
                if !ok {
                    assert!(!matches!(how, ReadPath::Parallel { .. }), "{what}");
                } else if strict {
                    assert!(matches!(how, ReadPath::Parallel { .. }), "{what}: fell back");
                }
                paths.push(how);
            }
        }
    }
    paths
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else if p.extension().is_some_and(|x| x == "xml" || x == "csv") {
            out.push(p);
        }
    }
    out.sort();
}

#[test]
fn every_sample_reads_the_same_in_pieces() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let mut files = Vec::new();
    for sub in ["formats", "inbox", "invalid"] {
        files_under(&root.join(sub), &mut files);
    }
    assert!(files.len() > 60, "{}", files.len());
    let (mut parallel, mut fallback) = (0, 0);
    for f in &files {
        for how in check(f, Limits::default(), &[1, 7, 64, 333, 4096], &[1, 3], &[Some(1), None]) {
            match how {
                ReadPath::Parallel { .. } => parallel += 1,
                _ => fallback += 1,
            }
        }
    }
    // the valid files and those with record-level errors are read in pieces
    assert!(parallel > fallback, "{parallel} in pieces, {fallback} fell back");
}

#[test]
fn generated_inboxes_read_the_same_in_pieces_whatever_the_threads() {
    let dir = tempfile::tempdir().unwrap();
    for format in [Format::Xml, Format::Csv] {
        for encoding in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
            let out = dir.path().join(format!("{format:?}-{encoding:?}"));
            let opts = GenerateOptions::new(400, 7, format, encoding, Date::parse("20261201").unwrap());
            synth::generate(&opts, &out).unwrap();
            let mut files = Vec::new();
            files_under(&out, &mut files);
            for f in &files {
                let paths = check(f, Limits::default(), &[1000], &[1, 2, 4], &[None]);
                if std::fs::metadata(f).unwrap().len() > 5000 {
                    assert!(
                        paths
                            .iter()
                            .all(|p| matches!(p, ReadPath::Parallel { pieces } if *pieces > 1)),
                        "{}: {paths:?}",
                        f.display()
                    );
                }
                check(f, Limits::default(), &[20_000], &[3], &[Some(2)]);
            }
        }
    }
}

fn sjis(s: &str) -> Vec<u8> {
    let (b, _, unmappable) = encoding_rs::SHIFT_JIS.encode(s);
    assert!(!unmappable);
    b.into_owned()
}

fn encode(text: &str, encoding: TextEncoding) -> Vec<u8> {
    match encoding {
        TextEncoding::Utf8 => text.as_bytes().to_vec(),
        TextEncoding::ShiftJis => sjis(text),
    }
}

const D: &str = "D,{seq},1,20260401,131045,{key},記号Ａ,12345,01,123456789018,131041,1234567,山田　太郎,ﾔﾏﾀﾞ ﾀﾛｳ,1,19600101,20260401,03,,,1,160-0022,{addr}";

/// A SubscriberChange CSV whose addresses are quoted and hold commas, doubled quotes, newlines
/// (CRLF and LF: such a record is rejected, the file is not), Shift_JIS characters with 0x5C
/// and 0x5D trail bytes, and a blank line.
fn quoted_csv(encoding: TextEncoding, eol: &str) -> Vec<u8> {
    let addrs = [
        "\"東京都新宿区,ソ\"\"ン\"\"﨑ハイツ‐101\"",
        "東京都新宿区新宿一丁目1番1号 ソン﨑ハイツ‐101",
        "\"東京都\r\nD,3,1,20260401\r\n新宿区\"",
        "\"ゾ表\nT,2\n\"",
        "\"\"",
        "\"ｱｲｳ,ｴｵ\"",
    ];
    let mut text = format!(
        "H,SubscriberChange,1,F-1,131045,20261121230000,1,{}{eol}",
        encoding.csv_code()
    );
    for (i, a) in addrs.iter().enumerate() {
        let seq = i + 1;
        text += &D
            .replace("{seq}", &seq.to_string())
            .replace("{key}", &format!("{:016}", seq))
            .replace("{addr}", a);
        text += eol;
        if seq == 4 {
            text += eol; // a blank line
        }
    }
    text += &format!("T,{}{eol}", addrs.len());
    encode(&text, encoding)
}

fn xml_file(encoding: TextEncoding, eol: &str, body_extra: &[(usize, &str)]) -> Vec<u8> {
    encode(&xml_text(encoding, eol, body_extra), encoding)
}

/// A SubscriberChange XML file with `body_extra` inserted before the records of the given
/// RecordSequence; addresses with 0x5D trail bytes before `]]`, entities and half-width kana.
fn xml_text(encoding: TextEncoding, eol: &str, body_extra: &[(usize, &str)]) -> String {
    let mut text = format!(
        "<?xml version=\"1.0\" encoding=\"{}\"?>{eol}<SubscriberChangeFile xmlns=\"urn:nhi-linkage:v1\">{eol}  <FileHeader><FileIdentifier>F-1</FileIdentifier><SenderInsurerNumber>131045</SenderInsurerNumber><CreationTime>20261121230000</CreationTime><FileSequence>1</FileSequence></FileHeader>{eol}",
        encoding.xml_label()
    );
    let addrs = ["東京都ゾ‐]]", "ソン﨑ハイツ", "A&amp;B &#x5C71;", "ｱｲｳ"];
    for (i, a) in addrs.iter().enumerate() {
        let seq = i + 1;
        for (at, extra) in body_extra {
            if *at == seq {
                text += extra;
            }
        }
        text += &format!(
            "  <SubscriberChange>{eol}    <RecordSequence>{seq}</RecordSequence><ChangeType>1</ChangeType><EffectiveDate>20260401</EffectiveDate><InsurerNumber>131045</InsurerNumber><SubscriberKey>{seq:016}</SubscriberKey><InsuredIdentificationNumber>12345</InsuredIdentificationNumber><InsuredBranchNumber>01</InsuredBranchNumber><MunicipalityCode>131041</MunicipalityCode><Name>山田　太郎</Name><NameKana>ﾔﾏﾀﾞ ﾀﾛｳ</NameKana><Sex1>1</Sex1><Birthdate>19600101</Birthdate><QualificationDate>20260401</QualificationDate><ReasonOfQualification>03</ReasonOfQualification><PersonalFamilyClassification>1</PersonalFamilyClassification>{eol}    <Address>{a}</Address>{eol}  </SubscriberChange>{eol}"
        );
    }
    text += &format!(
        "  <FileTrailer><RecordCount>{}</RecordCount></FileTrailer>{eol}</SubscriberChangeFile>{eol}",
        addrs.len()
    );
    text
}

/// Every byte offset as the target of a cut (piece sizes 1 to the file's size).
fn every_target(path: &Path, bytes: &[u8], strict: bool) -> Vec<ReadPath> {
    std::fs::write(path, bytes).unwrap();
    let sizes: Vec<usize> = (1..=bytes.len()).collect();
    compare(path, Limits::default(), &sizes, &[2], &[Some(3)], strict)
}

#[test]
fn cuts_never_split_characters_quoted_fields_or_line_ends() {
    let dir = tempfile::tempdir().unwrap();
    for encoding in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
        for eol in ["\r\n", "\n"] {
            let csv = quoted_csv(encoding, eol);
            let paths = every_target(&dir.path().join("q.csv"), &csv, true);
            assert!(paths.iter().all(|p| matches!(p, ReadPath::Parallel { .. })));
            // some cut falls on each record boundary, none inside the quoted newlines
            // H, six D rows and T: a cut after every row, none inside the quoted newlines
            assert!(paths.contains(&ReadPath::Parallel { pieces: 8 }), "{paths:?}");
            assert!(
                paths
                    .iter()
                    .all(|p| matches!(p, ReadPath::Parallel { pieces } if *pieces <= 8))
            );
            let xml = xml_file(encoding, eol, &[]);
            let paths = every_target(&dir.path().join("q.xml"), &xml, true);
            assert!(paths.contains(&ReadPath::Parallel { pieces: 5 }), "{paths:?}");
        }
    }
    // the file is what it claims: accepted, with the record holding newlines rejected
    let (text, ok) = serial(&dir.path().join("q.csv"), Limits::default());
    assert!(ok && text.contains("rejected: 2"), "{text}");
}

#[test]
fn look_alike_boundaries_fall_back_to_the_serial_reader() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (2, "  <!-- <SubscriberChange> in a comment -->\n"),
        (3, "  <?pi <SubscriberChange> ?>\n"),
    ];
    for encoding in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
        let xml = xml_file(encoding, "\n", &cases);
        let paths = every_target(&dir.path().join("c.xml"), &xml, false);
        assert!(
            paths.iter().any(|p| matches!(p, ReadPath::Fallback { .. })),
            "{paths:?}"
        );
        assert!(
            paths.iter().any(|p| matches!(p, ReadPath::Parallel { .. })),
            "{paths:?}"
        );
        // a record tag inside CDATA, in a field
        let cdata = xml_text(encoding, "\n", &[]).replacen(
            "<Address>ソン﨑ハイツ",
            "<Address><![CDATA[<SubscriberChange> ソン]]>﨑ハイツ",
            1,
        );
        let paths = every_target(&dir.path().join("d.xml"), &encode(&cdata, encoding), false);
        assert!(
            paths.iter().any(|p| matches!(p, ReadPath::Fallback { .. })),
            "{paths:?}"
        );
    }
    // a stray quote makes the quote count of the cutter wrong: the file is rejected either way
    let csv = String::from_utf8(quoted_csv(TextEncoding::Utf8, "\r\n")).unwrap();
    let stray = csv.replacen("D,2,1,", "D,2,\"1,", 1);
    every_target(&dir.path().join("s.csv"), stray.as_bytes(), true);
    // a row ended by a lone CR: from there on the serial reader names the lines of later rows
    // (records 3 and 4 are rejected, with lines)
    let lone = csv.replacen("\r\nD,2,", "\rD,2,", 1);
    let paths = every_target(&dir.path().join("r.csv"), lone.as_bytes(), false);
    assert!(
        paths.iter().any(|p| matches!(p, ReadPath::Fallback { .. })),
        "{paths:?}"
    );
}

#[test]
fn file_level_errors_in_large_files_name_what_the_serial_reader_names() {
    let dir = tempfile::tempdir().unwrap();
    for (format, encoding) in [(Format::Xml, TextEncoding::ShiftJis), (Format::Csv, TextEncoding::Utf8)] {
        let out = dir.path().join(format!("{format:?}"));
        let opts = GenerateOptions::new(300, 3, format, encoding, Date::parse("20261201").unwrap());
        synth::generate(&opts, &out).unwrap();
        let mut files = Vec::new();
        files_under(&out, &mut files);
        let big = files
            .iter()
            .max_by_key(|f| std::fs::metadata(f).unwrap().len())
            .unwrap();
        let good = std::fs::read(big).unwrap();
        let seq = |n: u64| match format {
            Format::Xml => format!("<RecordSequence>{n}</RecordSequence>"),
            Format::Csv => format!("\nD,{n},"),
        };
        let replace = |from: &str, to: &str| {
            let at = good.windows(from.len()).position(|w| w == from.as_bytes()).unwrap();
            [&good[..at], to.as_bytes(), &good[at + from.len()..]].concat()
        };
        let mut bad_byte = good.clone();
        let at = good.len() * 3 / 4;
        bad_byte[at] = 0xFF;
        let variants: Vec<(&str, Vec<u8>)> = vec![
            ("sequence", replace(&seq(40), &seq(39))),
            ("sequence zero", replace(&seq(41), &seq(0))),
            ("truncated", good[..good.len() / 2].to_vec()),
            ("invalid byte", bad_byte),
            ("count", {
                let marker: &[u8] = match format {
                    Format::Xml => b"<RecordCount>",
                    Format::Csv => b"\nT,",
                };
                let at = good.windows(marker.len()).rposition(|w| w == marker).unwrap() + marker.len();
                let digits = good[at..].iter().take_while(|b| b.is_ascii_digit()).count();
                let n: u64 = std::str::from_utf8(&good[at..at + digits]).unwrap().parse().unwrap();
                [&good[..at], (n + 1).to_string().as_bytes(), &good[at + digits..]].concat()
            }),
        ];
        for (what, bytes) in variants {
            let p = dir.path().join(format!("{what}.{}", format.extension()));
            std::fs::write(&p, &bytes).unwrap();
            let paths = check(&p, Limits::default(), &[500, 3000, 50_000], &[1, 2], &[None, Some(1)]);
            assert!(
                paths.iter().all(|p| matches!(p, ReadPath::Fallback { .. })),
                "{what}: {paths:?}"
            );
        }
    }
}

#[test]
fn rows_and_events_near_the_size_limit_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let csv = quoted_csv(TextEncoding::ShiftJis, "\r\n");
    let xml = xml_file(
        TextEncoding::ShiftJis,
        "\r\n",
        &[(2, "<!-- a comment between records -->\r\n")],
    );
    // from far below to above the longest row or record
    for (name, bytes, maxes) in [("l.csv", csv, 40..420), ("l.xml", xml, 40..900)] {
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes).unwrap();
        for max in maxes {
            let limits = Limits {
                max_record_bytes: max,
                ..Limits::default()
            };
            let (want, _) = serial(&p, limits);
            for chunk in [1, 300] {
                let (got, _, how) = POOLS[1].install(|| read(&p, limits, &pieces(chunk, None)));
                assert_same(
                    &want,
                    &got,
                    &format!("{name} max_record_bytes {max} chunk {chunk} {how:?}"),
                );
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Truncate(usize),
    Duplicate { from: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        4 => (any::<usize>(), prop_oneof![Just(b'<'), Just(b'>'), Just(b'"'), Just(b','), Just(b'\n'), Just(b'\r'), Just(b'/'), Just(0x82u8), Just(0xEFu8), any::<u8>()])
            .prop_map(|(i, v)| Mutation::SetByte(i, v)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        2 => (any::<usize>(), 1usize..1500).prop_map(|(from, len)| Mutation::Duplicate { from, len }),
    ]
}

fn apply(mut b: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let n = b.len().max(1);
    match *m {
        _ if b.is_empty() => {}
        Mutation::FlipBit(i, bit) => b[i % n] ^= 1 << (bit % 8),
        Mutation::SetByte(i, v) => b[i % n] = v,
        Mutation::Truncate(i) => b.truncate(i % n),
        Mutation::Duplicate { from, len } => {
            let from = from % n;
            let piece = b[from..(from + len).min(b.len())].to_vec();
            b.splice(from..from, piece);
        }
    }
    b
}

static SAMPLES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let mut files = Vec::new();
    for sub in ["formats", "inbox"] {
        files_under(&root.join(sub), &mut files);
    }
    let mut out: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    out.push(quoted_csv(TextEncoding::ShiftJis, "\r\n"));
    out.push(quoted_csv(TextEncoding::Utf8, "\n"));
    out.push(xml_file(
        TextEncoding::ShiftJis,
        "\n",
        &[(2, "  <!-- <SubscriberChange> -->\n")],
    ));
    out
});

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_files_read_the_same_in_pieces(
        sample in any::<usize>(),
        muts in prop::collection::vec(mutation(), 1..4),
        chunk in prop_oneof![1usize..40, 40usize..2000],
        window in 1usize..4,
        threads in 1usize..=3,
        sel in 0u8..4,
    ) {
        let mut b = SAMPLES[sample % SAMPLES.len()].clone();
        for m in &muts {
            b = apply(b, m);
        }
        let limits = match sel {
            0 => Limits::default(),
            1 => Limits { max_field_bytes: 16, max_record_bytes: 512, max_depth: 4, ..Limits::default() },
            2 => Limits { max_record_bytes: 300, ..Limits::default() },
            _ => Limits { max_record_bytes: 100, ..Limits::default() },
        };
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), &b).unwrap();
        let (want, ok) = serial(f.path(), limits);
        let (got, _, how) = POOLS[threads - 1].install(|| read(f.path(), limits, &pieces(chunk, Some(window))));
        prop_assert!(want == got, "chunk {} {:?}\n--- serial\n{}\n--- pieces\n{}", chunk, how, want, got);
        prop_assert!(ok || !matches!(how, ReadPath::Parallel { .. }), "{:?}", how);
    }
}
