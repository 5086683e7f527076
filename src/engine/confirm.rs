//! R5: a new enrollment of a person flagged elsewhere (another insurer's enrollment, or the
//! 国保 enrollment a late carry came from) goes to the flag-confirmation worklist.

use super::apply::CarryDone;
use super::batch::Applier;
use super::carry::matching_enrollments;
use crate::domain::SubKey;
use crate::domain::person::{Enrollment, PersonKey, Status};
use crate::domain::{Date, FlagType, IndividualNumber, MunicipalityCode, ResidentCode};
use crate::ledger::{self, scratch};
use anyhow::Result;
use std::collections::HashMap;

/// Index of enrollments by person key parts (R5 over many acquisitions: flagged persons only).
#[derive(Default)]
struct PersonIndex {
    by_mn: HashMap<IndividualNumber, Vec<SubKey>>,
    by_res: HashMap<(MunicipalityCode, ResidentCode, Date), Vec<SubKey>>,
}

impl PersonIndex {
    fn add(&mut self, e: &Enrollment) {
        let k = (e.insurer, e.key);
        if let Some(mn) = e.individual_number {
            self.by_mn.entry(mn).or_default().push(k);
        }
        if let (Some(m), Some(r)) = (e.municipality, e.resident.clone()) {
            self.by_res.entry((m, r, e.birthdate)).or_default().push(k);
        }
    }
    fn find(&self, p: &PersonKey) -> Vec<SubKey> {
        let mut v = Vec::new();
        if let Some(mn) = p.individual_number {
            v.extend(self.by_mn.get(&mn).into_iter().flatten().copied());
        }
        if let (Some(m), Some(r)) = (p.municipality, p.resident.clone()) {
            v.extend(self.by_res.get(&(m, r, p.birthdate)).into_iter().flatten().copied());
        }
        v.sort();
        v.dedup();
        v
    }
}

impl Applier<'_> {
    /// R5: any other new enrollment of a person flagged elsewhere goes to flag confirmation.
    pub(super) fn flag_confirmation(&mut self, late: &[CarryDone]) -> Result<()> {
        let conn = self.conn;
        let n_acq = scratch::acquisition_count(conn)?;
        if n_acq == 0 {
            return Ok(());
        }
        // first carry to each subscriber (applied ones, then late ones), for 自動応答不可
        let mut first_carry: HashMap<SubKey, &CarryDone> = HashMap::new();
        for c in self.out.carries.iter().chain(late) {
            first_carry.entry(c.to).or_insert(c);
        }
        // Only flagged enrollments can produce a row (自動応答不可 alone too: it is never carried). With many acquisitions (a
        // full load) index those persons once; with few, look each acquisition up.
        let n_flagged = ledger::count_flagged_subscribers(conn)?;
        let index = if n_acq as i64 > 4 * n_flagged.max(1) / 3 {
            let mut idx = PersonIndex::default();
            for (i, k) in ledger::flagged_subscriber_keys(conn)? {
                if let Some(e) = ledger::load_enrollment(conn, i, k)? {
                    idx.add(&e);
                }
            }
            Some(idx)
        } else {
            None
        };
        let mut rows: Vec<(bool, SubKey, SubKey, Vec<FlagType>, String)> = Vec::new();
        let mut last = 0i64;
        loop {
            let page = scratch::acquisition_page(conn, last, 4096)?;
            let Some(l) = page.last() else { break };
            last = l.id;
            for scratch::AcquisitionRow {
                insurer: ins,
                key,
                person,
                carried_or_ambiguous,
                ..
            } in page
            {
                let k = (ins, key);
                if carried_or_ambiguous {
                    if let Some(cd) = first_carry.get(&k).filter(|cd| cd.source.auto_response) {
                        rows.push((
                            ins.is_kouki(),
                            k,
                            cd.source.from,
                            vec![FlagType::AutoResponseProhibited],
                            "自動応答不可 at the previous insurer is not carried: confirm with the person".into(),
                        ));
                    }
                    continue;
                }
                let matched: Vec<Enrollment> = match &index {
                    Some(idx) => {
                        let mut v = Vec::new();
                        for (ci, ck) in idx.find(&person).into_iter().filter(|c| c.0 != ins) {
                            if let Some(e) = ledger::load_enrollment(conn, ci, ck)?
                                .filter(|e| e.status != Status::Cancelled && person.matches(&e.person()).is_some())
                            {
                                v.push(e);
                            }
                        }
                        v
                    }
                    None => matching_enrollments(conn, self.lookup, &person, |i| i != ins)?
                        .into_iter()
                        .map(|(e, _)| e)
                        .collect(),
                };
                if matched.is_empty() {
                    continue;
                }
                let own = ledger::load_enrollment(conn, ins, key)?;
                for e in matched {
                    // only protections this enrollment lacks need a person's decision
                    let flags: Vec<FlagType> = [
                        FlagType::SelfInfoProvisionProhibited,
                        FlagType::NonDisclosure,
                        FlagType::AutoResponseProhibited,
                    ]
                    .into_iter()
                    .filter(|t| e.flag(*t).is_some() && own.as_ref().is_none_or(|o| o.flag(*t).is_none()))
                    .collect();
                    if !flags.is_empty() {
                        rows.push((
                            ins.is_kouki(),
                            k,
                            (e.insurer, e.key),
                            flags,
                            "new enrollment of a person flagged at another insurer: ask the person and set the flags if needed"
                                .into(),
                        ));
                    }
                }
            }
        }
        // wave, then subscriber: the same order whatever the buckets (stable for equal keys)
        rows.sort_by_key(|a| (a.0, a.1));
        self.out
            .flag_confirmation
            .extend(rows.into_iter().map(|(_, k, o, f, n)| (k, o, f, n)));
        Ok(())
    }
}
