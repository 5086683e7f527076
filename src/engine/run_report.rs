//! The run report filled from what the batch did and what writing the linkage learned: carries,
//! pending flags, worklists (review, certificates, R5 confirmations, characters, expired support
//! measures), the summary, and the run's status. The report's own layout is in
//! [`crate::report::run`].

use super::batch::BatchOutcome;
use super::group::Derived;
use super::outbox::UnmappableRecord;
use crate::domain::SubKey;
use crate::domain::{Date, FlagType, InsurerNumber, SubscriberKey};
use crate::error::{Diagnostic, ErrorCode};
use crate::ledger::{self, scratch};
use crate::report::{CarryEntry, PendingEntry, RejectEntry, Report, ReportStatus, SummaryKey};
use anyhow::Result;
use rusqlite::Connection;
use std::path::PathBuf;

/// How the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Completed,
    CompletedWithRejects,
    /// Completed, but a person must act now: a group was withheld (R4, v1.1) or the review
    /// worklist holds a critical case (stale release, mismatched My Number, …).
    CompletedWithCriticalFindings,
    /// The safety invariant failed or output could not be written: nothing committed or published.
    Aborted,
}

#[derive(Debug)]
pub struct RunResult {
    pub status: RunStatus,
    pub report: Report,
    pub report_dir: PathBuf,
    pub outbox_dir: Option<PathBuf>,
}

fn key_cells(k: &SubKey) -> [String; 2] {
    [k.0.to_string(), k.1.to_string()]
}

/// Characters the output could not carry: one worklist row per character; a refused record
/// (E_UNMAPPABLE_CHAR) is a reject, and its subscriber stays unsent (R14: the server holds what
/// it held before the run; a later run sends it).
pub(crate) fn note_unmappable(conn: &Connection, report: &mut Report, unmappable: &[UnmappableRecord]) -> Result<()> {
    let mut char_rows = Vec::new();
    for UnmappableRecord {
        kind,
        insurer: ins,
        key,
        chars,
        refused,
    } in unmappable
    {
        for c in chars {
            char_rows.push(vec![
                kind.clone(),
                ins.to_string(),
                key.map(|k| k.to_string()).unwrap_or_default(),
                c.field.clone(),
                c.code_point.clone(),
                if *refused {
                    "refused (E_UNMAPPABLE_CHAR)".into()
                } else {
                    "replaced by ●".into()
                },
            ]);
        }
        if *refused {
            report.rejects.push(refused_reject(kind, *ins, *key, chars))?;
            if let Some(k) = key {
                let was = scratch::was_published(conn, *ins, *k)?;
                ledger::set_publication(conn, *ins, *k, was, true)?;
            }
        }
    }
    report.add_character_identification(char_rows);
    Ok(())
}

fn refused_reject(
    kind: &str,
    ins: InsurerNumber,
    key: Option<SubscriberKey>,
    chars: &[crate::formats::writer::UnmappableChar],
) -> RejectEntry {
    RejectEntry::from_diag(
        &Diagnostic::new(
            kind,
            ErrorCode::UnmappableChar,
            format!(
                "subscriber {}/{} not written: characters the output cannot carry (no Shift_JIS mapping, or 外字/private use) ({})",
                ins,
                key.map(|k| k.to_string()).unwrap_or_default(),
                chars
                    .iter()
                    .map(|c| format!("{} in {}", c.code_point, c.field))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .field(chars.first().map(|c| c.field.clone()).unwrap_or_default()),
        false,
    )
}

/// The run's status from its findings, also written into the report.
pub(crate) fn settle_status(report: &mut Report, o: &BatchOutcome) -> RunStatus {
    let critical = o.review.iter().any(|r| r.critical)
        || o.insurer_review.iter().any(|r| r.2)
        || report.summary.count(&SummaryKey::Withheld) > 0;
    let status = if critical {
        RunStatus::CompletedWithCriticalFindings
    } else if report.rejects.is_empty() {
        RunStatus::Completed
    } else {
        RunStatus::CompletedWithRejects
    };
    report.status = match status {
        RunStatus::Completed => ReportStatus::Completed,
        RunStatus::CompletedWithRejects => ReportStatus::CompletedWithRejects,
        _ => ReportStatus::CompletedWithCriticalFindings,
    };
    status
}

/// Everything the report takes from the batch, the linkage pass and the ledger.
pub(crate) fn fill_report(
    conn: &Connection,
    r: &mut Report,
    o: &BatchOutcome,
    derived: Derived,
    as_of: Date,
) -> Result<()> {
    add_carries(r, o, as_of)?;
    add_pending(conn, r)?;
    // flag changes and R9 certificate issuance (collected while the linkage was written)
    let Derived {
        flag_changes,
        cert,
        kouki_months,
        held,
        publication: _,
        holds: _,
    } = derived;
    r.flag_changes.extend(flag_changes);
    r.add_certificate_issuance(cert);
    add_review(r, o, &held);
    add_flag_confirmation(r, o);
    add_support_measure_expiry(conn, r, as_of)?;

    // union side: 後期 transition registrations of this run by month of acquisition
    for (month, n) in kouki_months {
        r.summary.add(SummaryKey::KoukiTransitions(month), n);
    }
    r.count_inputs();
    let s = &mut r.summary;
    s.set(SummaryKey::EventsApplied, o.events_applied);
    s.set(SummaryKey::SubscribersWritten, o.touched);
    s.set(SummaryKey::Carries, o.carries.len() as u64);
    s.set(SummaryKey::Withheld, held.len() as u64);
    s.set(SummaryKey::Unpublished, ledger::unsent_count(conn)?);
    s.set(SummaryKey::PendingFlagsApplied, o.pending_applied as u64);
    s.set(SummaryKey::HandoffsReceived, o.handoffs_received);
    s.set(SummaryKey::HandoffsMatched, o.handoffs_matched);
    Ok(())
}

fn add_carries(r: &mut Report, o: &BatchOutcome, as_of: Date) -> Result<()> {
    for c in &o.carries {
        let mut flags = Vec::new();
        if c.source.self_info.is_some() {
            flags.push(format!(
                "SelfInfoProvisionProhibited({})",
                c.source.self_info.map_or("", |x| x.code())
            ));
        }
        if c.source.non_disclosure {
            flags.push("NonDisclosure".into());
        }
        r.carries.push(CarryEntry {
            from_insurer: c.source.from.0.to_string(),
            from_subscriber_key: c.source.from.1.to_string(),
            to_insurer: c.to.0.to_string(),
            to_subscriber_key: c.to.1.to_string(),
            flags,
            rule: c.source.rule,
            via: c.source.via,
            qualification_date: c.qualification_date.to_string(),
            future_dated: c.qualification_date > as_of,
        });
    }
    Ok(())
}

fn add_pending(conn: &Connection, r: &mut Report) -> Result<()> {
    let pending = &mut r.pending_flags;
    ledger::for_each_pending_flag(conn, |pf| {
        let c = &pf.change;
        pending.push(PendingEntry {
            insurer: c.insurer.to_string(),
            subscriber_key: c.key.map(|k| k.to_string()).unwrap_or_default(),
            flag_type: c.flag_type,
            operation: c.operation.into(),
            info_code: c.info_code.map(|i| i.to_string()),
            file: pf.file.clone(),
            record_sequence: c.seq,
        })
    })?;
    r.pending_handoffs = ledger::list_pending_handoffs(conn)?.len() as u64;
    Ok(())
}

/// The review worklist: the batch's cases, the groups withheld (R4, v1.1, critical), then the
/// findings about insurer-wide flags.
fn add_review(r: &mut Report, o: &BatchOutcome, held: &[(SubKey, super::hold::Hold)]) {
    let held = held.iter().map(|(k, h)| (k, &h.candidates, h.why.as_str(), true));
    let reviews = o
        .review
        .iter()
        .map(|r| (&r.subscriber, &r.candidates, r.why.as_str(), r.critical))
        .chain(held);
    let mut review: Vec<Vec<String>> = reviews
        .map(|(k, cands, why, critical)| {
            let [i, s] = key_cells(k);
            vec![
                i,
                s,
                cands
                    .iter()
                    .map(|c| format!("{}/{}", c.0, c.1))
                    .collect::<Vec<_>>()
                    .join(" "),
                why.to_owned(),
                if critical { "critical" } else { "" }.to_owned(),
            ]
        })
        .collect();
    review.extend(o.insurer_review.iter().map(|(ins, why, critical)| {
        vec![
            ins.to_string(),
            String::new(),
            String::new(),
            why.clone(),
            if *critical { "critical" } else { "" }.to_owned(),
        ]
    }));
    r.add_review(review);
}

fn add_flag_confirmation(r: &mut Report, o: &BatchOutcome) {
    let flag_names = |fs: &[FlagType]| fs.iter().map(|f| f.name_en().to_owned()).collect::<Vec<_>>();
    let confirm = o.flag_confirmation.iter().map(|(k, other, flags, note)| {
        let [i, s] = key_cells(k);
        vec![
            i,
            s,
            format!("{}/{}", other.0, other.1),
            flag_names(flags).join(" "),
            note.clone(),
        ]
    });
    r.add_flag_confirmation(confirm.collect());
}

/// R9: support measures past their end date: review, never released automatically.
fn add_support_measure_expiry(conn: &Connection, r: &mut Report, as_of: Date) -> Result<()> {
    let expired = ledger::expired_support_measures(conn, as_of)?
        .into_iter()
        .map(|e| {
            let flag = FlagType::parse(&e.flag_type)
                .map(|t| t.name_en().to_owned())
                .unwrap_or(e.flag_type);
            vec![
                e.insurer,
                e.subscriber_key,
                e.info_code,
                flag,
                e.support_measure_end,
                "住基支援措置の期限切れ: 延長の有無を確認（自動解除しない）/ check renewal; never released automatically"
                    .to_owned(),
            ]
        })
        .collect();
    r.add_support_measure_expiry(expired);
    Ok(())
}
