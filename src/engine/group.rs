//! R2: a touched subscriber's SubscriberLinkage group, built from its complete state re-read
//! from the ledger after the batch; and what the report learns from it on the way.

use super::batch::flag_row;
use super::hold;
use crate::domain::SubKey;
use crate::domain::person::{Enrollment, Status, flag_diff};
use crate::domain::{Date, FlagType, InsurerNumber, ProcessingCode, SubscriberKey};
use crate::formats::linkage::{FlagRow, ProvisionControl, QualificationRow, SubscriberGroup};
use crate::ledger::{self, scratch};
use crate::report::{FlagChangeEntry, FlagChangeKind};
use anyhow::{Context, Result};
use rusqlite::Connection;
use std::collections::BTreeMap;

fn control_from(e: &Enrollment) -> ProvisionControl {
    ProvisionControl {
        self_info: e.self_info_reason(),
        non_disclosure: e.flag(FlagType::NonDisclosure).is_some(),
        auto_response: e.flag(FlagType::AutoResponseProhibited).is_some(),
    }
}

/// What the report learns while the linkage is streamed (one pass over the touched subscribers).
#[derive(Default)]
pub(crate) struct Derived {
    pub(crate) flag_changes: Vec<FlagChangeEntry>,
    /// R9 certificate issuance rows
    pub(crate) cert: Vec<Vec<String>>,
    /// 後期 transition registrations by month of acquisition (`YYYYMM`)
    pub(crate) kouki_months: BTreeMap<String, u64>,
    /// Groups withheld (R4, v1.1), in writing order.
    pub(crate) held: Vec<(SubKey, hold::Hold)>,
    pub(crate) holds: hold::HoldChecker,
    /// Ledger publication state to set once the outputs are written: (subscriber, published,
    /// unsent) — R14. Only subscribers whose stored state differs are listed.
    pub(crate) publication: Vec<(SubKey, bool, bool)>,
}

/// R2: a touched (or still unsent, R14) subscriber's group, with its complete state re-read from
/// the ledger; `None` when it is not written (cancelled before ever being sent, or withheld:
/// [`super::hold`]). Also records what the report needs about it (flag changes, certificates,
/// transitions, holds), its changed InfoCode flags (FlagLinkage rows), and the ledger's
/// publication state to correct once the group is written.
pub(crate) fn group_for(
    conn: &Connection,
    insurer: InsurerNumber,
    key: SubscriberKey,
    before: &scratch::Before,
    as_of: Date,
    derived: &mut Derived,
    info_rows: &mut Vec<FlagRow>,
) -> Result<Option<SubscriberGroup>> {
    let e = ledger::load_enrollment(conn, insurer, key)?.context("a touched subscriber is missing from the ledger")?;
    for (fk, b, a) in flag_diff(&before.flags, &e.flags) {
        if let Some(info) = fk.0 {
            let release_time = e.released.get(fk).map(|r| r.effective_time);
            info_rows.push(flag_row(insurer, Some(key), info, fk.1, b, a, release_time));
        }
        let change = match (b, a) {
            (None, Some(_)) => FlagChangeKind::Set,
            (Some(_), None) => FlagChangeKind::Released,
            (Some(b), Some(a)) if b.reason != a.reason => FlagChangeKind::ReasonChanged,
            _ => continue,
        };
        derived.flag_changes.push(FlagChangeEntry {
            insurer: insurer.to_string(),
            subscriber_key: key.to_string(),
            info_code: fk.0.map(|i| i.to_string()),
            flag_type: fk.1.name_en().to_owned(),
            change,
        });
    }
    let si = (None, FlagType::SelfInfoProvisionProhibited);
    if !before.flags.contains_key(&si) && e.status != Status::Cancelled {
        if let Some(f) = e.flags.get(&si) {
            derived.cert.push(vec![insurer.to_string(), key.to_string(), e.name.clone(), e.name_kana.clone(), f.reason.map_or("", |x| x.code()).to_owned(), f.effective_time.to_string(), "資格確認書を交付（申請不要）。交付方法は本人と調整すること／agree the delivery method with the person; never mail where the abuser may receive it".into()]);
        }
    }
    if insurer.is_kouki() {
        if let Some(p) = e.current_period().filter(|p| p.reason_of_qualification.is_transition()) {
            *derived
                .kouki_months
                .entry(p.qualification_date.to_string()[..6].to_owned())
                .or_insert(0) += 1;
        }
    }
    let k = (insurer, key);
    let processing = match e.status {
        // never sent: nothing to delete at the server
        Status::Cancelled if !before.was_published => {
            if e.unsent || e.published {
                derived.publication.push((k, false, false));
            }
            return Ok(None);
        }
        Status::Cancelled => ProcessingCode::Delete,
        _ if before.was_published => ProcessingCode::Update,
        _ => ProcessingCode::FirstRegistration,
    };
    if let Some(h) = derived.holds.check(conn, &e, as_of)? {
        // R14: not sent; the server's registration state is what it was before the run
        derived.publication.push((k, before.was_published, true));
        derived.held.push((k, h));
        return Ok(None);
    }
    // R14: what the server holds once this group is published
    let published = processing != ProcessingCode::Delete;
    if e.unsent || e.published != published {
        derived.publication.push((k, published, false));
    }
    Ok(Some(SubscriberGroup {
        processing,
        insurer: e.insurer,
        key: e.key,
        individual_number: e.individual_number,
        name: e.name.clone(),
        name_kana: e.name_kana.clone(),
        sex: e.sex,
        birthdate: e.birthdate,
        post_number: e.post_number,
        address: e.address.clone(),
        control: control_from(&e),
        qualifications: e
            .periods
            .iter()
            .map(|p| QualificationRow {
                insurer: e.insurer,
                card_symbol: p.card_symbol.clone(),
                card_number: p.card_number.clone(),
                branch: p.branch,
                qualification_date: p.qualification_date,
                disqualification_date: p.disqualification_date,
                reason_of_loss: p.reason_of_loss,
                personal_family: p.personal_family,
            })
            .collect(),
    }))
}
