//! `nhi-linkage age-transition extract`: the 国保 side of the age-75 hand-over (R8).

use super::Exit;
use super::common::parse_as_of;
use crate::age_transition::extract::{Missed, Upcoming, extract, per_month};
use crate::domain::{Date, FileKind, FlagType, IndividualNumber, InsurerNumber, Timestamp, self_info_column};
use crate::formats::writer::{RecordWriter, UnmappablePolicy, WriteError};
use crate::formats::{FileHeader, Format, TextEncoding, hex};
use crate::report::{OutputEntry, Report, ReportStatus, SummaryKey, Worklist, write_private};
use crate::shard::{Shard, ledger_shard};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// 国保 side: write an AgeTransitionHandoff file of every flagged member (自己情報提供不可 or
    /// 不開示該当) whose 後期 acquisition date (75th birthday) falls in (as-of, as-of + lead], for the
    /// union to set the flags in the same linkage as the registration. Also checks for members
    /// already past the date whose 後期 enrollment lacks the flags ("missed", exit status 5).
    Extract(ExtractArgs),
    /// 国保 side of the registration inquiry (R13): answer the union's AgeTransitionInquiry
    /// files from this ledger (read only) with AgeTransitionHandoff files for its inbox: each
    /// inquired person's flags, or all 0 (empty SourceSubscriberKey when the person is unknown).
    Answer(super::age_transition_answer::AnswerArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExtractArgs {
    /// The SQLite ledger [default: ./var/ledger.sqlite]
    #[arg(long = "ledger", value_name = "LEDGER")]
    pub ledger_arg: Option<PathBuf>,
    /// `--ledger`, else the config file's, else the default
    #[arg(skip)]
    pub ledger: PathBuf,
    /// 基準日 D, YYYYMMDD [default: today]
    #[arg(long, value_name = "YYYYMMDD")]
    pub as_of: Option<String>,
    /// Lead L in months: members whose acquisition date A satisfies D < A ≤ D + L (month end clamped)
    #[arg(long, default_value_t = 6)]
    pub lead_months: u32,
    /// Narrow the missed check to acquisition dates within this many months before the as-of
    /// date (the report states the narrowed window). Without it every flagged member past the
    /// date is checked, however long ago (R8).
    #[arg(long, value_name = "N")]
    pub missed_lookback_months: Option<u32>,
    /// Folder for the hand-off files
    #[arg(long)]
    pub out: PathBuf,
    /// Folder for the report [default: ./var/reports]
    #[arg(long = "reports", value_name = "REPORTS")]
    pub reports_arg: Option<PathBuf>,
    /// `--reports`, else the config file's, else the default
    #[arg(skip)]
    pub reports: PathBuf,
    /// Syntax of the hand-off file (the same option name as `run`'s; `--format` is its older
    /// spelling)
    #[arg(long = "output-format", alias = "format", value_enum, default_value = "csv")]
    pub format: Format,
    /// Encoding of the hand-off file (`--encoding` is its older spelling)
    #[arg(
        long = "output-encoding",
        alias = "encoding",
        value_enum,
        default_value = "shift_jis"
    )]
    pub encoding: TextEncoding,
    /// Characters Shift_JIS cannot hold, and 外字 (U+E000–U+F8FF) in any encoding: refuse the
    /// record or write ● (文字同定) [default: reject]
    #[arg(long = "unmappable", value_enum, value_name = "UNMAPPABLE")]
    pub unmappable_arg: Option<UnmappablePolicy>,
    /// `--unmappable`, else the config file's, else reject
    #[arg(skip)]
    pub unmappable: UnmappablePolicy,
    /// The shard whose ledger this is (`run --shard I/N`): the hand-off file gets a name and a
    /// FileIdentifier of its own (`…-s{I}of{N}`), so the union can read every shard's file.
    #[arg(long, value_name = "I/N", value_parser = Shard::parse)]
    pub shard: Option<Shard>,
    /// Settings file (TOML) of `run`: its `ledger`, `as_of`, `reports`, `unmappable` and
    /// `report_encoding` apply here too; command-line flags win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub report: super::ReportArgs,
}

pub fn run(a: Args) -> Result<Exit> {
    match a.command {
        Sub::Extract(x) => run_extract(x),
        Sub::Answer(x) => super::age_transition_answer::run_answer(x),
    }
}

fn run_extract(mut a: ExtractArgs) -> Result<Exit> {
    apply_config(&mut a)?;
    let d = parse_as_of(a.as_of.clone())?;
    let led = match crate::ledger::acquire(&a.ledger, crate::ledger::IfMissing::Refuse) {
        Ok(l) => l,
        Err(e) if e.downcast_ref::<crate::ledger::LedgerBusy>().is_some() => {
            crate::complain!("nhi-linkage: {e}");
            return Ok(super::Exit::Busy);
        }
        Err(e) => return Err(e),
    };
    let ledger = a.ledger.clone();
    extract_from(a, d, led).map_err(|e| crate::ledger::name_corruption(e, &ledger))
}

/// The extract from an opened ledger (checked first, as every command that publishes).
fn extract_from(a: ExtractArgs, d: crate::domain::Date, led: crate::ledger::Opened) -> Result<Exit> {
    // an extract changes nothing in the ledger: a whole-file check it makes is not recorded
    crate::ledger::check_at_start(&led, crate::ledger::WholeCheck::Auto)?;
    let _lock = led.lock;
    let conn = led.conn;
    match (a.shard, ledger_shard(&conn)?) {
        (Some(s), Some(l)) if s != l => anyhow::bail!("--shard {s}: this ledger belongs to shard {l}"),
        (Some(s), None) => anyhow::bail!("--shard {s}: this ledger was not written by `run --shard {s}`"),
        (None, Some(l)) => anyhow::bail!(
            "this ledger belongs to shard {l}: pass --shard {l} so that its hand-off file gets a FileIdentifier of its own"
        ),
        _ => {}
    }
    let x = extract(&conn, d, a.lead_months, a.missed_lookback_months)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    // not `…-s{I}of{N}`: that names `run`'s shard runs, which `merge-shards` looks for
    let run_id = format!(
        "extract-{d}{}",
        a.shard
            .map(|s| format!("-shard{}of{}", s.index, s.count))
            .unwrap_or_default()
    );
    let mut report = Report::new(run_id.clone(), d.to_string(), false);
    report.kind = crate::report::ReportKind::Extract;
    let rows = write_handoff_files(&a, d, &x.upcoming, &mut report)?;
    let missed_scope = state_missed_window(&a, d, &mut report);
    add_worklists(&mut report, rows, &x.missed, &missed_scope);
    report.summary.set(SummaryKey::Upcoming, x.upcoming.len() as u64);
    report.summary.set(SummaryKey::Missed, x.missed.len() as u64);
    report
        .summary
        .set(SummaryKey::AlreadyKoukiByDisability, x.already_kouki.len() as u64);
    for (month, n) in per_month(&x.upcoming) {
        report.summary.set(SummaryKey::UpcomingIn(month.to_string()), n as u64);
    }
    let critical = !x.missed.is_empty() || report.worklists.get("handoff_blocked").is_some_and(|n| *n > 0);
    report.status = if critical {
        ReportStatus::CompletedWithCriticalFindings
    } else {
        ReportStatus::Completed
    };
    let run_id = content_run_id(&run_id, &report)?;
    crate::logging::set_run_id(&run_id);
    report.run_id = run_id.clone();
    let dir = a.reports.join(&run_id);
    report.write_to(&dir)?;
    for o in &report.outputs {
        crate::say!(
            "wrote {} ({} records, {} bytes)",
            a.out.join(&o.name).display(),
            o.records,
            o.bytes
        );
    }
    crate::say!(
        "upcoming transitions: {} (per month: {:?})",
        x.upcoming.len(),
        per_month(&x.upcoming)
    );
    if critical {
        crate::complain!(
            "nhi-linkage: CRITICAL: {} missed transition(s), {} blocked hand-off(s); see the report",
            x.missed.len(),
            report.worklists["handoff_blocked"]
        );
    }
    if !missed_scope.is_empty() {
        crate::say!("missed check{missed_scope}");
    }
    crate::say!("report:  {}", dir.join("report.html").display());
    Ok(if critical { Exit::Critical } else { Exit::Ok })
}

/// The settings the command line leaves open, from the config file (command-line flags win).
fn apply_config(a: &mut ExtractArgs) -> Result<()> {
    let cfg = super::common::load_config(a.config.as_ref())?;
    a.report.apply(cfg.report_encoding);
    a.ledger = a
        .ledger_arg
        .take()
        .or(cfg.ledger)
        .unwrap_or_else(|| "var/ledger.sqlite".into());
    a.reports = a
        .reports_arg
        .take()
        .or(cfg.reports)
        .unwrap_or_else(|| "var/reports".into());
    a.unmappable = a.unmappable_arg.or(cfg.unmappable).unwrap_or_default();
    a.as_of = a.as_of.take().or(cfg.as_of);
    Ok(())
}

/// One hand-off file per 国保 insurer into `--out`, listed in the report's outputs; returns the
/// upcoming worklist's rows and the members that could not be written.
fn write_handoff_files(a: &ExtractArgs, d: Date, upcoming: &[Upcoming], report: &mut Report) -> Result<HandoffRows> {
    let suffix = a.shard.map(|s| s.suffix()).unwrap_or_default();
    let mut blocked = Vec::new();
    let mut upcoming_rows = Vec::new();
    let insurers: std::collections::BTreeSet<InsurerNumber> = upcoming.iter().map(|u| u.enrollment.insurer).collect();
    for ins in insurers {
        let members: Vec<&Upcoming> = upcoming.iter().filter(|u| u.enrollment.insurer == ins).collect();
        // R8: a FileIdentifier of its own per content. The file is rendered once with the bare
        // stem as identifier; the SHA-256 of those bytes completes the identifier and the name,
        // so the same ledger state and options give the same file, and different content never
        // shares an identifier (a second extract on one day is not E_FILE_ID_REUSED at the union).
        let stem = format!("ATH-{ins}-{d}{suffix}");
        let draft = render_handoff(a, d, ins, &stem, &members)?;
        let id = unique_file_identifier(&stem, &Sha256::digest(&draft.buf))?;
        let tag = &id[stem.len() + 1..];
        let r = render_handoff(a, d, ins, &id, &members)?;
        let name = format!("AgeTransitionHandoff_{ins}_{d}{suffix}_{tag}.{}", a.format.extension());
        let tmp = a.out.join(format!(".{name}.tmp"));
        write_private(&tmp, &r.buf)?;
        std::fs::rename(&tmp, a.out.join(&name))?;
        report.outputs.push(OutputEntry {
            name,
            kind: "AgeTransitionHandoff".into(),
            records: r.records,
            bytes: r.bytes,
            sha256: hex(&Sha256::digest(&r.buf)),
        });
        upcoming_rows.extend(r.rows);
        blocked.extend(r.blocked);
    }
    Ok(HandoffRows {
        upcoming: upcoming_rows,
        blocked,
    })
}

/// Worklist rows of the hand-off files: who was written, and who could not be.
struct HandoffRows {
    upcoming: Vec<Vec<String>>,
    blocked: Vec<Vec<String>>,
}

/// R8: the missed check has no default limit; a narrowed window is stated in the report
/// (`missed_window`). Returns the words the missed worklist's title and the console add.
fn state_missed_window(a: &ExtractArgs, d: Date, report: &mut Report) -> String {
    let narrowed = a
        .missed_lookback_months
        .map(|n| (n, crate::age_transition::extract::missed_window_start(d, n)));
    let missed_scope = match narrowed {
        None => String::new(),
        Some((n, Some(start))) => format!(
            " (NARROWED by --missed-lookback-months {n}: only acquisition dates after {start}; earlier ones are not checked)"
        ),
        Some((n, None)) => format!(" (--missed-lookback-months {n}: every acquisition date)"),
    };
    report.extra.insert(
        "missed_window".into(),
        match narrowed {
            None => serde_json::json!({ "narrowed": false, "acquisition_dates": "all up to the as-of date" }),
            Some((n, start)) => serde_json::json!({
                "narrowed": start.is_some(),
                "lookback_months": n,
                "acquisition_dates_after": start.map(|s| s.to_string()),
            }),
        },
    );
    missed_scope
}

/// The extract's three worklists: upcoming transitions, missed ones (critical), blocked hand-offs.
fn add_worklists(report: &mut Report, rows: HandoffRows, missed: &[Missed], missed_scope: &str) {
    let missed_rows: Vec<Vec<String>> = missed
        .iter()
        .map(|m| {
            vec![
                m.insurer.to_string(),
                m.key.to_string(),
                m.acquisition_date.to_string(),
                m.finding.clone(),
                "後期へ至急連絡しフラグ設定を確認 / contact the union now".into(),
            ]
        })
        .collect();
    report.add_worklist(
        "upcoming_transitions",
        Worklist {
            title: "年齢到達引継 — flagged members turning 75".into(),
            columns: vec![
                "insurer",
                "subscriber_key",
                "name",
                "acquisition_date",
                "self_info",
                "non_disclosure",
            ],
            rows: rows.upcoming,
        },
    );
    report.add_worklist(
        "missed",
        Worklist {
            title: format!("引継漏れ (CRITICAL) — past the acquisition date, 後期 lacks the flags{missed_scope}"),
            columns: vec!["insurer", "subscriber_key", "acquisition_date", "finding", "action"],
            rows: missed_rows,
        },
    );
    report.add_worklist(
        "handoff_blocked",
        Worklist {
            title: "引継不可 — could not be written to the hand-off file".into(),
            columns: vec!["insurer", "subscriber_key", "acquisition_date", "why"],
            rows: rows.blocked,
        },
    );
}

/// The report folder's name: the run id and a digest of the content (outputs, worklists, extra,
/// summary). Another extract on the same date with a different result (a changed ledger, other
/// options) writes its own folder, never over this one; the same extract repeated writes the
/// same folder.
fn content_run_id(run_id: &str, report: &Report) -> Result<String> {
    let mut h = Sha256::new();
    for o in &report.outputs {
        h.update(o.sha256.as_bytes());
    }
    for (name, wl) in &report.worklist_rows {
        h.update(name.as_bytes());
        for cell in wl.rows.iter().flatten() {
            h.update(cell.as_bytes());
            h.update([0]);
        }
    }
    h.update(serde_json::to_vec(&report.extra)?);
    h.update(serde_json::to_vec(&report.summary)?);
    Ok(format!("{run_id}-{}", &hex(&h.finalize())[..8]))
}

/// The longest FileIdentifier the XSD allows.
const MAX_FILE_IDENTIFIER: usize = 40;

/// `<stem>-<hex>`: the stem and as many leading hex digits of `digest` as fit in 40 characters
/// (18 for an unsharded extract). Refuses a stem that leaves fewer than 8.
fn unique_file_identifier(stem: &str, digest: &[u8]) -> Result<String> {
    let room = MAX_FILE_IDENTIFIER.saturating_sub(stem.len() + 1);
    if room < 8 {
        anyhow::bail!("FileIdentifier {stem}: too long for a content tag (at most {MAX_FILE_IDENTIFIER} characters)");
    }
    let h = hex(digest);
    Ok(format!("{stem}-{}", &h[..room.min(h.len())]))
}

/// One rendered hand-off file of one insurer.
struct Rendered {
    buf: Vec<u8>,
    records: u64,
    bytes: u64,
    /// `upcoming_transitions` worklist rows of the members written
    rows: Vec<Vec<String>>,
    /// `handoff_blocked` worklist rows of the members that could not be written
    blocked: Vec<Vec<String>>,
}

fn render_handoff(
    a: &ExtractArgs,
    d: Date,
    ins: InsurerNumber,
    file_identifier: &str,
    members: &[&Upcoming],
) -> Result<Rendered> {
    let header = FileHeader {
        kind: FileKind::AgeTransitionHandoff,
        file_identifier: file_identifier.to_owned(),
        sender: ins,
        creation_time: Timestamp::start_of(d),
        file_sequence: 1,
        format: a.format,
        encoding: a.encoding,
    };
    let mut blocked = Vec::new();
    let mut rows = Vec::new();
    let mut w = RecordWriter::start(Vec::new(), header, a.unmappable)?;
    for u in members {
        let e = &u.enrollment;
        let (Some(muni), Some(res)) = (e.municipality, e.resident.as_ref()) else {
            blocked.push(vec![
                e.insurer.to_string(),
                e.key.to_string(),
                u.acquisition_date.to_string(),
                "MunicipalityCode or ResidentCode missing in the ledger: hand over by hand".into(),
            ]);
            continue;
        };
        let seq = (w.count() + 1).to_string();
        let (birth, ad) = (e.birthdate.to_string(), u.acquisition_date.to_string());
        let set_time = e
            .flags
            .values()
            .map(|f| f.effective_time)
            .min()
            .map(|t| t.to_string())
            .unwrap_or_default();
        let si = self_info_column(e.self_info_reason());
        let b = |t| if e.flag(t).is_some() { "1" } else { "0" };
        let (ins_s, key_s) = (e.insurer.to_string(), e.key.to_string());
        let vals = [
            seq.as_str(),
            &ins_s,
            &key_s,
            e.individual_number.as_ref().map_or("", IndividualNumber::expose),
            muni.as_str(),
            res.as_str(),
            &e.name,
            &e.name_kana,
            e.sex.code(),
            &birth,
            &ad,
            si,
            b(FlagType::NonDisclosure),
            b(FlagType::AutoResponseProhibited),
            &set_time,
        ];
        match w.write(&vals, &[]) {
            Ok(_) => rows.push(vec![
                ins_s,
                key_s,
                e.name.clone(),
                ad,
                si.to_owned(),
                b(FlagType::NonDisclosure).to_owned(),
            ]),
            Err(WriteError::Unmappable(chars)) => blocked.push(vec![
                ins_s,
                key_s,
                ad,
                format!(
                    "E_UNMAPPABLE_CHAR: {} not writable in Shift_JIS (use --unmappable replace)",
                    chars
                        .iter()
                        .map(|c| format!("{} in {}", c.code_point, c.field))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ]),
            Err(e) => return Err(e.into()),
        }
    }
    let (buf, records, bytes) = w.finish()?;
    Ok(Rendered {
        buf,
        records,
        bytes,
        rows,
        blocked,
    })
}
