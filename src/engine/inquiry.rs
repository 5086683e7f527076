//! R13 registration inquiry, the union's side.
//!
//! Sites where 国保 and the union keep separate ledgers learn of a flagged member only through a
//! hand-off, and the extract lists only members turning 75 (not the 障害認定 route, not flags set
//! after the extract, not members it missed). So every 後期 資格取得 with reason 01/02 whose R3
//! resolution finds no candidate at all (no 国保 enrollment in this ledger, no hand-off) is
//! *inquired*: the run writes it into an `AgeTransitionInquiry` file for its municipality, in the
//! run's report folder, and the 国保 side answers it with `age-transition answer` (an
//! AgeTransitionHandoff record: the flags, or all `0`; with an empty SourceSubscriberKey for a
//! person it does not know).
//!
//! State lives in the ledger's `inquiry` table (one row per registration, `open` or
//! `answered`). After the batch is applied ([`reconcile`], inside the run's transaction):
//!
//! - registrations of this run that matched nothing get an `open` row;
//! - every open row is checked again: a 国保 enrollment in this ledger, a stored hand-off (an
//!   answer with flags has been carried by then, one without flags is marked matched here) or an
//!   answer about an unknown person that matches it by R3's rule answers it;
//! - an open row is written into this run's inquiry file again (every run until answered: a lost
//!   or late file heals the next night); while open, a registration with a future
//!   QualificationDate that lacks a protective flag is withheld ([`super::hold`]: not published,
//!   critical, kept unsent and sent by the first run after the answer, R14) and a past-dated one
//!   is published and listed as awaiting an answer;
//! - an answered registration that takes effect later (and lacks a protection, and has no 国保
//!   enrollment in this ledger) is inquired again every night until its QualificationDate: a flag
//!   国保 sets after the answer reaches it by the next answer (a follow-up; not withheld).

use super::batch::BatchOutcome;
use crate::domain::SubKey;
use crate::domain::person::{Enrollment, PersonKey, Status};
use crate::domain::{
    AgeTransitionInquiry, Date, FileKind, IndividualNumber, InsurerNumber, MunicipalityCode, ResidentCode,
    SubscriberKey, Timestamp,
};
use crate::formats::writer::{RecordWriter, UnmappablePolicy, WriteError};
use crate::formats::{FileHeader, Format, TextEncoding, hex};
use crate::ledger;
use crate::report::{Report, SummaryKey, Worklist, write_private};
use anyhow::Result;
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// The inquiry record of a registration, when it can be written (MunicipalityCode and
/// ResidentCode known, a transition period).
pub fn inquiry_of(e: &Enrollment, seq: u64) -> Option<AgeTransitionInquiry> {
    let p = e.current_period()?;
    Some(AgeTransitionInquiry {
        seq,
        insurer: e.insurer,
        key: e.key,
        individual_number: e.individual_number,
        municipality: e.municipality?,
        resident: e.resident.clone()?,
        name: e.name.clone(),
        name_kana: e.name_kana.clone(),
        sex: e.sex,
        birthdate: e.birthdate,
        qualification_date: p.qualification_date,
        reason: p.reason_of_qualification,
    })
}

/// What [`reconcile`] found, for the report and the inquiry files.
#[derive(Debug, Default)]
pub struct Inquiries {
    /// Records to write, per municipality (one file each), in subscriber order.
    pub records: BTreeMap<MunicipalityCode, Vec<AgeTransitionInquiry>>,
    /// `inquiry_awaiting` worklist rows.
    pub awaiting: Vec<Vec<String>>,
    /// `inquiry_answered` worklist rows (answered in this run).
    pub answered: Vec<Vec<String>>,
    /// Future-dated registrations withheld for want of an answer.
    pub withheld: u64,
    /// Answers (with no SourceSubscriberKey) that matched no open inquiry (e.g. a second answer).
    pub unused_answers: u64,
    /// Answered, future-dated registrations inquired again (see [`reconcile`], step 4).
    pub followups: u64,
}

/// One encoded inquiry file.
#[derive(Debug)]
pub struct InquiryFile {
    pub name: String,
    pub municipality: MunicipalityCode,
    pub bytes: Vec<u8>,
    pub records: u64,
    pub sha256: String,
}

fn key_of(ins: &str, key: &str) -> Option<SubKey> {
    Some((InsurerNumber::parse(ins).ok()?, SubscriberKey::parse(key).ok()?))
}

/// 国保 enrollments of this ledger that are this person (R3 rule).
fn kokuho_matches(conn: &Connection, person: &PersonKey) -> Result<Vec<SubKey>> {
    let mut out = Vec::new();
    for (i, k) in ledger::find_person(conn, person)? {
        if !i.is_kokuho() {
            continue;
        }
        if let Some(e) = ledger::load_enrollment(conn, i, k)? {
            if e.status != Status::Cancelled && person.matches(&e.person()).is_some() {
                out.push((i, k));
            }
        }
    }
    Ok(out)
}

/// R13 after the batch is applied (see the module documentation): records new inquiries,
/// answers open ones, and collects what this run inquires. Withholding itself is decided with
/// the other holds when the group is written ([`super::hold`]).
pub fn reconcile(conn: &Connection, run_id: &str, as_of: Date, o: &mut BatchOutcome) -> Result<Inquiries> {
    let mut out = Inquiries::default();
    // 1. registrations of this run that matched nothing
    for k in std::mem::take(&mut o.unmatched) {
        ledger::open_inquiry(conn, k.0, k.1, run_id)?;
    }
    // 2. answers without flags that are still pending (the extract never writes such a record,
    //    so they are answers): matched to the inquired registration, so they do not wait forever
    o.handoffs_matched += match_flagless_answers(conn)?;
    // 3. every open inquiry
    let open = ledger::open_inquiries(conn)?;
    let mut answers_used = vec![false; o.unknown_answers.len()];
    // first_run and times_inquired stay in the ledger; the worklist leaves them out (they differ
    // between shard runs and one process, and a retried run counts again)
    for inq in open {
        let Some(k) = key_of(&inq.insurer, &inq.subscriber_key) else {
            continue;
        };
        let e = ledger::load_enrollment(conn, k.0, k.1)?;
        let Some(e) = e.filter(|e| e.status != Status::Cancelled) else {
            // cancelled (取消) or gone: nothing left to inquire about
            ledger::delete_inquiry(conn, &inq)?;
            continue;
        };
        let person = e.person();
        let kokuho = kokuho_matches(conn, &person)?;
        let handoffs: Vec<_> = ledger::find_handoffs(conn, &person)?
            .into_iter()
            .filter(|h| person.matches(&h.person).is_some())
            .collect();
        // (a match that holds a protection the registration lacks — several candidates, or a
        // carry not made yet — is answered here and withheld by R3/R4's own hold)
        let mut by = kokuho.first().map(|(i, k)| format!("国保 enrollment {i}/{k}"));
        if by.is_none() {
            by = handoffs.first().map(|h| format!("hand-off {}", h.origin));
        }
        for (i, (origin, p)) in o.unknown_answers.iter().enumerate() {
            if person.matches(p).is_some() {
                answers_used[i] = true;
                if by.is_none() {
                    by = Some(format!("answer {origin} (person unknown to 国保: no flags)"));
                }
            }
        }
        let q = e.current_period().map(|p| p.qualification_date);
        let q_s = q.map(|d| d.to_string()).unwrap_or_default();
        if let Some(by) = by {
            ledger::mark_inquiry_answered(conn, &inq, run_id, &by)?;
            out.answered
                .push(vec![inq.insurer, inq.subscriber_key, e.name.clone(), q_s, by]);
            continue;
        }
        // withheld whatever flags the union set itself (R13 makes no exception), as super::hold does
        let future = q.is_some_and(|d| d > as_of);
        let record = inquiry_of(&e, 0);
        let mut note = match &record {
            Some(_) => "inquired (AgeTransitionInquiry in this run's report folder)".to_owned(),
            None => "cannot be inquired: MunicipalityCode or ResidentCode missing; send a 記載事項変更 with them, or confirm the flags with 国保 by hand".to_owned(),
        };
        if future {
            // withheld by super::hold (critical on the review worklist)
            out.withheld += 1;
            note = format!("withheld (critical); {note}");
        } else {
            note = format!("published; awaiting the answer; {note}");
        }
        if let Some(r) = record {
            out.records.entry(r.municipality).or_default().push(r);
            ledger::mark_inquired(conn, &inq, run_id)?;
        }
        out.awaiting.push(vec![
            inq.insurer,
            inq.subscriber_key,
            e.name.clone(),
            q_s,
            e.current_period()
                .map(|p| p.reason_of_qualification.code().to_owned())
                .unwrap_or_default(),
            if future { "critical" } else { "" }.to_owned(),
            note,
        ]);
    }
    // 4. registrations of this run carried from a hand-off of an earlier night (see
    //    confirm_earlier_handoffs), then follow-ups (see inquire_again)
    confirm_earlier_handoffs(
        conn,
        run_id,
        &std::mem::take(&mut o.carried_from_earlier_handoff),
        &mut out,
    )?;
    out.followups = inquire_again(conn, run_id, as_of, &mut out.records)?;
    if out.followups > 0 {
        tracing::info!(
            followups = out.followups,
            "answered, future-dated registrations inquired again (R13)"
        );
    }
    for recs in out.records.values_mut() {
        recs.sort_by_key(|r| (r.insurer, r.key));
    }
    out.unused_answers = answers_used.iter().filter(|u| !**u).count() as u64;
    Ok(out)
}

/// Answers without flags that are still pending (the extract never writes such a record, so
/// they are answers), matched to the inquired registration of their person; returns how many.
fn match_flagless_answers(conn: &Connection) -> Result<u64> {
    let mut matched = 0;
    for h in ledger::unmatched_flagless_handoffs(conn)? {
        let person = PersonKey {
            individual_number: h
                .individual_number
                .as_deref()
                .and_then(|m| IndividualNumber::parse(m).ok()),
            municipality: MunicipalityCode::parse(&h.municipality).ok(),
            resident: ResidentCode::parse(&h.resident_code).ok(),
            birthdate: match Date::parse(&h.birthdate) {
                Ok(d) => d,
                Err(_) => continue,
            },
        };
        let mut target = None;
        for (i, k) in ledger::find_person(conn, &person)? {
            let inquired = ledger::inquiry_exists(conn, i, k)?;
            let same = ledger::load_enrollment(conn, i, k)?.is_some_and(|e| person.matches(&e.person()).is_some());
            if inquired && same {
                target = Some((i, k));
                break;
            }
        }
        if let Some((i, k)) = target {
            ledger::match_flagless_handoff(conn, &h, i, k)?;
            matched += 1;
        }
    }
    Ok(matched)
}

/// A registration of this run that a hand-off of an earlier night matched got 国保's flags as
/// of that night; by the registration's night 国保 may have set another (and, with the
/// enrollment lost, no extract lists it again). When it lacks 自己情報提供不可 or 不開示該当 and
/// its person has no 国保 enrollment in this ledger, it is inquired now (recorded as answered by
/// the hand-off, so later follow-ups count it) and listed on `inquiry_awaiting`, published: the
/// answer carries what changed the next night (R3's late carry).
fn confirm_earlier_handoffs(conn: &Connection, run_id: &str, regs: &[SubKey], out: &mut Inquiries) -> Result<()> {
    for &(i, k) in regs {
        let Some(e) = ledger::load_enrollment(conn, i, k)?.filter(|e| e.status != Status::Cancelled) else {
            continue;
        };
        if e.has_protective_flag_pair() || !kokuho_matches(conn, &e.person())?.is_empty() {
            continue;
        }
        let Some(r) = inquiry_of(&e, 0) else { continue };
        let inq = ledger::OpenInquiry {
            insurer: i.as_str().to_owned(),
            subscriber_key: k.as_str().to_owned(),
        };
        ledger::record_answered(conn, &inq, run_id, "hand-off of an earlier night")?;
        ledger::mark_inquired(conn, &inq, run_id)?;
        let p = e.current_period();
        out.awaiting.push(vec![
            inq.insurer,
            inq.subscriber_key,
            e.name.clone(),
            p.map(|p| p.qualification_date.to_string()).unwrap_or_default(),
            p.map(|p| p.reason_of_qualification.code().to_owned()).unwrap_or_default(),
            String::new(),
            "published with the flags of a hand-off of an earlier night; inquired again in case 国保's flags changed since".to_owned(),
        ]);
        out.records.entry(r.municipality).or_default().push(r);
    }
    Ok(())
}

/// Follow-ups (R13): an answered registration that takes effect later, whose person has no 国保
/// enrollment in this ledger and that lacks a protection, is inquired again every night until
/// its QualificationDate, so that a flag 国保 sets after the answer still reaches it (no extract
/// lists a 障害認定 member, and a late carry needs the ledger's enrollment). A registration a
/// hand-off matched is followed up the same way (recorded as answered by it at its first
/// follow-up): the extract lists only enrollments active on its date, so a flag 国保 sets after
/// the hand-off on an enrollment lost before the 75th birthday would reach it no other way. Not
/// withheld, not on a worklist: the answer is there already. Returns how many were inquired again.
fn inquire_again(
    conn: &Connection,
    run_id: &str,
    as_of: Date,
    records: &mut BTreeMap<MunicipalityCode, Vec<AgeTransitionInquiry>>,
) -> Result<u64> {
    let mut followups = 0;
    let answered = ledger::answered_inquiries(conn)?.into_iter().map(|q| (q, false));
    let by_handoff = ledger::handoff_matched_uninquired(conn)?.into_iter().map(|q| (q, true));
    for (inq, new) in answered.chain(by_handoff) {
        let Some(k) = key_of(&inq.insurer, &inq.subscriber_key) else {
            continue;
        };
        let Some(e) = ledger::load_enrollment(conn, k.0, k.1)?.filter(|e| e.status != Status::Cancelled) else {
            continue;
        };
        let Some(p) = e.current_period() else { continue };
        let future = p.reason_of_qualification.is_transition() && p.qualification_date > as_of;
        if !future || e.has_protective_flag_pair() || !kokuho_matches(conn, &e.person())?.is_empty() {
            continue;
        }
        let asked = records
            .values()
            .flatten()
            .any(|r| (r.insurer, r.key) == (e.insurer, e.key));
        if asked {
            continue; // inquired by this run already (confirm_earlier_handoffs)
        }
        if let Some(r) = inquiry_of(&e, 0) {
            if new {
                ledger::record_answered(conn, &inq, run_id, "hand-off (no inquiry)")?;
            }
            records.entry(r.municipality).or_default().push(r);
            ledger::mark_inquired(conn, &inq, run_id)?;
            followups += 1;
        }
    }
    Ok(followups)
}

/// How inquiry files are written: as the run writes its linkage files.
#[derive(Clone, Copy, Debug)]
pub struct InquiryOutput {
    pub format: Format,
    pub encoding: TextEncoding,
    pub unmappable: UnmappablePolicy,
}

impl Inquiries {
    /// Encodes the inquiry files (one per municipality) and adds the worklists and counts to the
    /// report. Records refused for an unmappable character are listed, not written.
    pub fn finish(
        mut self,
        report: &mut Report,
        run_id: &str,
        creation: Timestamp,
        out: &InquiryOutput,
    ) -> Result<Vec<InquiryFile>> {
        let mut files = Vec::new();
        let mut refused = Vec::new();
        for (muni, recs) in std::mem::take(&mut self.records) {
            let Some(sender) = recs.iter().map(|r| r.insurer).min() else {
                continue;
            };
            let header = FileHeader {
                kind: FileKind::AgeTransitionInquiry,
                file_identifier: format!("ATI-{muni}-{run_id}"),
                sender,
                creation_time: creation,
                file_sequence: 1,
                format: out.format,
                encoding: out.encoding,
            };
            let mut w = RecordWriter::start(Vec::new(), header, out.unmappable)?;
            for r in recs {
                let seq = (w.count() + 1).to_string();
                let vals = inquiry_values(&r, &seq);
                let v: Vec<&str> = vals.iter().map(String::as_str).collect();
                match w.write(&v, &[]) {
                    Ok(replaced) if !replaced.is_empty() => refused.push(vec![
                        r.insurer.to_string(),
                        r.key.to_string(),
                        chars(&replaced),
                        "written with ● (文字同定)".into(),
                    ]),
                    Ok(_) => {}
                    Err(WriteError::Unmappable(c)) => refused.push(vec![
                        r.insurer.to_string(),
                        r.key.to_string(),
                        chars(&c),
                        "E_UNMAPPABLE_CHAR: not inquired (use --unmappable replace, or ask 国保 by hand)".into(),
                    ]),
                    Err(e) => return Err(e.into()),
                }
            }
            let (bytes, records, _) = w.finish()?;
            if records == 0 {
                continue;
            }
            files.push(InquiryFile {
                name: format!(
                    "{}_{muni}_{run_id}.{}",
                    FileKind::AgeTransitionInquiry.name(),
                    out.format.extension()
                ),
                municipality: muni,
                sha256: hex(&Sha256::digest(&bytes)),
                bytes,
                records,
            });
        }
        let cols = |c: &[&'static str]| c.to_vec();
        report.add_worklist(
            "inquiry_awaiting",
            Worklist {
                title: "年齢到達照会 — 後期 registrations awaiting the 国保 answer (R13)".into(),
                columns: cols(&[
                    "insurer",
                    "subscriber_key",
                    "name",
                    "qualification_date",
                    "reason",
                    "critical",
                    "status",
                ]),
                rows: self.awaiting,
            },
        );
        report.add_worklist(
            "inquiry_answered",
            Worklist {
                title: "年齢到達照会 — answered in this run (R13)".into(),
                columns: cols(&["insurer", "subscriber_key", "name", "qualification_date", "answered_by"]),
                rows: self.answered,
            },
        );
        report.add_worklist(
            "inquiry_not_written",
            Worklist {
                title: "年齢到達照会 — characters the output cannot carry: no Shift_JIS mapping or 外字 (R13)".into(),
                columns: cols(&["insurer", "subscriber_key", "characters", "action"]),
                rows: refused,
            },
        );
        let s = &mut report.summary;
        s.set(SummaryKey::Inquiries, files.iter().map(|f| f.records).sum());
        s.set(SummaryKey::InquiriesWithheld, self.withheld);
        s.set(SummaryKey::InquiryAnswersUnused, self.unused_answers);
        report.extra.insert(
            "inquiries".into(),
            serde_json::json!(
                files
                    .iter()
                    .map(|f| serde_json::json!({
                        "name": f.name,
                        "municipality": f.municipality.to_string(),
                        "records": f.records,
                        "bytes": f.bytes.len(),
                        "sha256": f.sha256,
                    }))
                    .collect::<Vec<_>>()
            ),
        );
        Ok(files)
    }
}

fn chars(c: &[crate::formats::writer::UnmappableChar]) -> String {
    c.iter()
        .map(|c| format!("{} in {}", c.code_point, c.field))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Field values of an inquiry record, in `INQUIRY_FIELDS` order.
pub fn inquiry_values(r: &AgeTransitionInquiry, seq: &str) -> Vec<String> {
    vec![
        seq.to_owned(),
        r.insurer.to_string(),
        r.key.to_string(),
        r.individual_number
            .as_ref()
            .map_or(String::new(), |m| m.expose().to_owned()),
        r.municipality.to_string(),
        r.resident.as_str().to_owned(),
        r.name.clone(),
        r.name_kana.clone(),
        r.sex.code().to_owned(),
        r.birthdate.to_string(),
        r.qualification_date.to_string(),
        r.reason.code().to_owned(),
    ]
}

/// Writes the inquiry files into the run's (staged) report folder, owner-only.
pub fn write_files(dir: &Path, files: &[InquiryFile]) -> Result<()> {
    for f in files {
        write_private(&dir.join(&f.name), &f.bytes)?;
    }
    Ok(())
}
