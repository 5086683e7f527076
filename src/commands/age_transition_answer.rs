//! `nhi-linkage age-transition answer`: the 国保 side of the registration inquiry (R13).
//!
//! Reads AgeTransitionInquiry files (written by the union's `run` into its report folder) and
//! answers every inquired person from this ledger with one AgeTransitionHandoff record: the
//! person's flags, or all `0` when there are none; a person the ledger does not know gets all `0`
//! and an empty SourceSubscriberKey. One answer file per inquiry file, in the inquiry's syntax
//! and encoding, written into `--out` aside and then renamed. The ledger is opened read-only.
//!
//! When R3 matches no enrollment but one has the inquired municipality, 宛名番号 and birthdate
//! under another My Number, the answer states that enrollment's flags (an "unknown, all 0"
//! answer would let the union publish a victim's registration unflagged), and the command
//! reports it as critical (exit 5) for staff to check the number with the union.

use super::Exit;
use super::common::parse_as_of;
use crate::domain::person::{Enrollment, PersonKey, Status};
use crate::domain::{
    AgeTransitionInquiry, Catalog, Date, FileKind, FlagType, InsurerNumber, MunicipalityCode, Record, SelfInfoReason,
    SubscriberKey, Timestamp, self_info_column,
};
use crate::formats::writer::{RecordWriter, UnmappablePolicy};
use crate::formats::{FileHeader, ReadOptions, RecordOutcome, hex, read_input};
use crate::ledger;
use crate::report::write_private;
use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct AnswerArgs {
    /// The 国保 ledger (read only) [default: ./var/ledger.sqlite]
    #[arg(long = "ledger", value_name = "LEDGER")]
    pub ledger_arg: Option<PathBuf>,
    /// `--ledger`, else the config file's, else the default
    #[arg(skip)]
    pub ledger: PathBuf,
    /// An AgeTransitionInquiry file, or a folder (e.g. the union run's report folder): every
    /// `AgeTransitionInquiry_*.xml|csv` file in it
    #[arg(long, value_name = "FILE|DIR")]
    pub inquiry: PathBuf,
    /// Folder for the answer files (AgeTransitionHandoff_…), for the union's inbox
    #[arg(long)]
    pub out: PathBuf,
    /// Date of the answer, YYYYMMDD (CreationTime, file names) [default: today]
    #[arg(long, value_name = "YYYYMMDD")]
    pub as_of: Option<String>,
    /// Settings file (TOML) of `run`: its `ledger` and `as_of` apply here too; command-line
    /// flags win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The answer about one inquired person.
struct Answer {
    source_insurer: InsurerNumber,
    source_key: Option<SubscriberKey>,
    self_info: Option<SelfInfoReason>,
    non_disclosure: bool,
    auto_response: bool,
    set_time: Option<Timestamp>,
    /// The flags are those of a 国保 enrollment with the same municipality, 宛名番号 and
    /// birthdate but another My Number (no enrollment matched by R3): stated all the same, so
    /// that a mistyped number never hides a victim, and reported for staff to check.
    other_number: bool,
}

/// Opens the ledger read-only: answering never changes it.
fn open_read_only(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        bail!("ledger {} does not exist", path.display());
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("cannot open ledger {} read-only", path.display()))?;
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if v != ledger::SCHEMA_VERSION {
        bail!(
            "ledger {} has schema version {v}, not {}: not an nhi-linkage ledger of this release",
            path.display(),
            ledger::SCHEMA_VERSION
        );
    }
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// 国保 insurers of this ledger with enrollments in the municipality.
fn kokuho_insurers(conn: &Connection, muni: MunicipalityCode) -> Result<Vec<InsurerNumber>> {
    Ok(ledger::insurers_in_municipality(conn, muni)?
        .into_iter()
        .filter(|i| i.is_kokuho())
        .collect())
}

/// R3's rule over this ledger's 国保 enrollments; the flags of every match (never weaker), the
/// key of the one with the latest period.
fn answer_for(conn: &Connection, q: &AgeTransitionInquiry, insurers: &[InsurerNumber]) -> Result<Answer> {
    let person = PersonKey {
        individual_number: q.individual_number,
        municipality: Some(q.municipality),
        resident: Some(q.resident.clone()),
        birthdate: q.birthdate,
    };
    let mut matches: Vec<Enrollment> = Vec::new();
    let mut other_number: Vec<Enrollment> = Vec::new();
    for (i, k) in ledger::find_person(conn, &person)? {
        if !i.is_kokuho() {
            continue;
        }
        if let Some(e) = ledger::load_enrollment(conn, i, k)? {
            if e.status == Status::Cancelled {
                continue;
            }
            if person.matches(&e.person()).is_some() {
                matches.push(e);
            } else if person.resident_match_only(&e.person()) {
                other_number.push(e);
            }
        }
    }
    // R3 found nobody, but the municipality knows the person by 宛名番号 and birthdate under
    // another My Number: answering "unknown, all 0" would release the registration unflagged
    // (the union publishes it); state that enrollment's flags and report the difference
    let other = matches.is_empty() && !other_number.is_empty();
    if other {
        matches = other_number;
    }
    matches.sort_by_key(|e| (e.current_period().map(|p| p.qualification_date), e.insurer, e.key));
    let Some(primary) = matches.last() else {
        return Ok(Answer {
            source_insurer: insurers[0],
            source_key: None,
            self_info: None,
            non_disclosure: false,
            auto_response: false,
            set_time: None,
            other_number: false,
        });
    };
    let mut a = Answer {
        source_insurer: primary.insurer,
        source_key: Some(primary.key),
        self_info: primary.self_info_reason(),
        non_disclosure: false,
        auto_response: false,
        set_time: None,
        other_number: other,
    };
    for e in &matches {
        a.self_info = a.self_info.or(e.self_info_reason());
        a.non_disclosure |= e.flag(FlagType::NonDisclosure).is_some();
        a.auto_response |= e.flag(FlagType::AutoResponseProhibited).is_some();
        for t in [
            FlagType::SelfInfoProvisionProhibited,
            FlagType::NonDisclosure,
            FlagType::AutoResponseProhibited,
        ] {
            if let Some(f) = e.flag(t) {
                a.set_time = Some(a.set_time.map_or(f.effective_time, |s| s.min(f.effective_time)));
            }
        }
    }
    Ok(a)
}

fn inquiry_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        bail!("--inquiry {}: no such file or folder", path.display());
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))? {
        let p = e?.path();
        let ext = p.extension().and_then(|x| x.to_str()).map(str::to_ascii_lowercase);
        // a run's report folder also holds worklist CSVs: only the inquiry files by name
        let inquiry = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("AgeTransitionInquiry_"));
        if p.is_file() && inquiry && matches!(ext.as_deref(), Some("xml" | "csv")) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

pub fn run_answer(mut a: AnswerArgs) -> Result<Exit> {
    let cfg = super::common::load_config(a.config.as_ref())?;
    a.ledger = a
        .ledger_arg
        .take()
        .or(cfg.ledger)
        .unwrap_or_else(|| "var/ledger.sqlite".into());
    a.as_of = a.as_of.or(cfg.as_of);
    let d = parse_as_of(a.as_of.clone())?;
    let conn = open_read_only(&a.ledger)?;
    let files = inquiry_files(&a.inquiry)?;
    let single = a.inquiry.is_file();
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let catalog = Catalog::default_catalog();
    let ropts = ReadOptions {
        catalog: &catalog,
        limits: Default::default(),
    };
    let mut tally = Tally {
        status: Exit::Ok,
        critical: false,
        answered_files: 0,
    };
    for path in files {
        answer_file(&a, d, &conn, &ropts, &path, single, &mut tally)?;
    }
    if tally.answered_files == 0 && tally.status == Exit::Ok {
        crate::say!("no inquiry answered");
    }
    // a person to check outweighs a rejected inquiry record
    Ok(if tally.critical { Exit::Critical } else { tally.status })
}

/// What answering the inquiry files came to.
struct Tally {
    /// `Rejected` once a file or record could not be answered.
    status: Exit,
    /// Some answer names a person to check (another My Number).
    critical: bool,
    answered_files: u32,
}

/// Reads one inquiry file and writes its answer file into `--out`.
fn answer_file(
    a: &AnswerArgs,
    d: Date,
    conn: &Connection,
    ropts: &ReadOptions,
    path: &Path,
    single: bool,
    tally: &mut Tally,
) -> Result<()> {
    let display = path.display().to_string();
    let mut inquiries = Vec::new();
    let mut rejects = Vec::new();
    let res = read_input(path, &display, ropts, &mut |o| match o {
        RecordOutcome::Accepted(Record::AgeTransitionInquiry(q)) => inquiries.push(q),
        RecordOutcome::Accepted(_) => {}
        RecordOutcome::Rejected { faults, .. } => rejects.extend(faults),
    });
    let header = match res {
        Ok(s) => s.header,
        Err(r) => {
            for d in &r.diagnostics {
                crate::complain!("nhi-linkage: {d}");
            }
            tally.status = Exit::Rejected;
            return Ok(());
        }
    };
    if header.kind != FileKind::AgeTransitionInquiry {
        if single {
            bail!(
                "{display} is a {} file, not an AgeTransitionInquiry file",
                header.kind.name()
            );
        }
        crate::say!("skipped {display}: a {} file, not an inquiry", header.kind.name());
        return Ok(());
    }
    for d in &rejects {
        crate::complain!("nhi-linkage: {d} (not answered)");
        tally.status = Exit::Rejected;
    }
    let answers = answers_of(conn, &display, &inquiries, tally)?;
    if answers.is_empty() {
        crate::say!("{display}: nothing to answer");
        return Ok(());
    }
    let (name, records, bytes) = write_answers(a, d, &display, &header, &answers)?;
    tally.answered_files += 1;
    let flagged = answers
        .iter()
        .filter(|(_, x)| x.self_info.is_some() || x.non_disclosure || x.auto_response)
        .count();
    let unknown = answers.iter().filter(|(_, x)| x.source_key.is_none()).count();
    for (q, x) in answers.iter().filter(|(_, x)| x.other_number) {
        // no My Number here: the keys name both sides
        crate::complain!(
            "nhi-linkage: CRITICAL: {display} RecordSequence {}: the union's {} {} has another My Number than this \
             ledger's {} {} (same municipality, 宛名番号 and birthdate); answered with that enrollment's flags. \
             Check the My Number with the union",
            q.seq,
            q.insurer,
            q.key,
            x.source_insurer,
            x.source_key.map(|k| k.to_string()).unwrap_or_default()
        );
        tally.critical = true;
    }
    crate::say!(
        "answered {records} inquiries of {display}: {flagged} with flags, {unknown} unknown to this ledger → {} ({bytes} bytes)",
        a.out.join(&name).display()
    );
    Ok(())
}

/// The answer to each inquiry of a file, from one snapshot of the ledger; an inquiry about a
/// municipality this ledger does not hold is refused, not answered.
fn answers_of<'q>(
    conn: &Connection,
    display: &str,
    inquiries: &'q [AgeTransitionInquiry],
    tally: &mut Tally,
) -> Result<Vec<(&'q AgeTransitionInquiry, Answer)>> {
    ledger::read_snapshot(conn, |conn| {
        let mut answers = Vec::new();
        for q in inquiries {
            let insurers = kokuho_insurers(conn, q.municipality)?;
            if insurers.is_empty() {
                // an all-0 answer from a ledger that does not hold the municipality would release
                // a withheld registration unflagged: refuse instead
                crate::complain!(
                    "nhi-linkage: {display} RecordSequence {} field MunicipalityCode: E_STATE_CONFLICT: this ledger holds no 国保 enrollment of municipality {}: not answered (answer from the municipality's 国保 ledger)",
                    q.seq,
                    q.municipality
                );
                tally.status = Exit::Rejected;
                continue;
            }
            answers.push((q, answer_for(conn, q, &insurers)?));
        }
        Ok(answers)
    })
}

/// Writes the answer file (an AgeTransitionHandoff file in the inquiry's syntax and encoding);
/// returns its name, records and bytes.
fn write_answers(
    a: &AnswerArgs,
    d: Date,
    display: &str,
    header: &FileHeader,
    answers: &[(&AgeTransitionInquiry, Answer)],
) -> Result<(String, u64, u64)> {
    let sender = answers.iter().map(|(_, x)| x.source_insurer).min().expect("not empty");
    let rows: Vec<Vec<String>> = answers
        .iter()
        .enumerate()
        .map(|(i, (q, x))| answer_values(i as u64 + 1, q, x))
        .collect();
    // FileIdentifier from the inquiry and the answer: a new answer gets a new one, the same
    // answer written again is the same file (the union skips it as already applied)
    let mut h = Sha256::new();
    h.update(header.sender.as_str());
    h.update([0x1f]);
    h.update(&header.file_identifier);
    for r in &rows {
        for v in r {
            h.update([0x1f]);
            h.update(v);
        }
        h.update([0x1e]);
    }
    let tag = &hex(&h.finalize())[..12];
    let name = format!(
        "{}_{sender}_{d}_{tag}.{}",
        FileKind::AgeTransitionHandoff.name(),
        header.format.extension()
    );
    let out_header = FileHeader {
        kind: FileKind::AgeTransitionHandoff,
        file_identifier: format!("ATA-{d}-{tag}"),
        sender,
        creation_time: Timestamp::start_of(d),
        file_sequence: 1,
        format: header.format,
        encoding: header.encoding,
    };
    // names are the inquiry's own (informative only; matching uses the key fields): a
    // character the encoding cannot hold becomes ● rather than leave the person unanswered
    let mut w = RecordWriter::start(Vec::new(), out_header, UnmappablePolicy::Replace)?;
    for r in &rows {
        let v: Vec<&str> = r.iter().map(String::as_str).collect();
        let replaced = w.write(&v, &[])?;
        if !replaced.is_empty() {
            crate::say!(
                "{display}: RecordSequence {}: {} written as ●",
                r[0],
                replaced
                    .iter()
                    .map(|c| format!("{} in {}", c.code_point, c.field))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let (buf, records, bytes) = w.finish()?;
    let tmp = a.out.join(format!(".{name}.tmp"));
    write_private(&tmp, &buf)?;
    std::fs::rename(&tmp, a.out.join(&name)).with_context(|| format!("cannot write {}", a.out.display()))?;
    Ok((name, records, bytes))
}

/// Field values of the answer, in `HANDOFF_FIELDS` order.
fn answer_values(seq: u64, q: &AgeTransitionInquiry, x: &Answer) -> Vec<String> {
    let b = |v: bool| if v { "1" } else { "0" }.to_owned();
    vec![
        seq.to_string(),
        x.source_insurer.to_string(),
        x.source_key.map(|k| k.to_string()).unwrap_or_default(),
        q.individual_number
            .as_ref()
            .map_or(String::new(), |m| m.expose().to_owned()),
        q.municipality.to_string(),
        q.resident.as_str().to_owned(),
        q.name.clone(),
        q.name_kana.clone(),
        q.sex.code().to_owned(),
        q.birthdate.to_string(),
        q.qualification_date.to_string(),
        self_info_column(x.self_info).to_owned(),
        b(x.non_disclosure),
        b(x.auto_response),
        x.set_time.map(|t| t.to_string()).unwrap_or_default(),
    ]
}
