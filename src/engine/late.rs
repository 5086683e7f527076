//! Late carries (R3), after both waves: hand-offs and protective flags that arrive after the
//! 後期 registration was made reach it ([`Applier::late_carries`]).

use super::apply::{Carry, CarryDone, carry_onto};
use super::batch::{Applier, ReviewItem, stored_published};
use super::carry::{matching_enrollments, resolve_carry};
use crate::domain::SubKey;
use crate::domain::person::{CarryVia, PersonKey, Status};
use crate::domain::{FlagType, Timestamp};
use crate::ledger::{self, JournalEvent, StoredHandoff, scratch};
use anyhow::Result;
use std::collections::BTreeMap;

/// Registration → what points at it: (origin file for the journal, a hand-off of this run?).
type Targets = BTreeMap<SubKey, Vec<(String, Option<SubKey>)>>;

impl Applier<'_> {
    /// A flagged hand-off that R3 matches to no registration while a 後期 transition
    /// registration has its municipality, 宛名番号 and birthdate under another My Number: no
    /// carry (R3), and a critical review entry, as the same mismatch gets at a 資格取得; a
    /// mistyped number must not hide a victim (found by tests/two_ledgers.rs). Every night while
    /// the hand-off stays pending.
    fn review_other_number(&mut self, hk: SubKey, h: &ledger::StoredHandoff) -> Result<()> {
        if h.self_info.is_none() && !h.non_disclosure {
            return Ok(());
        }
        for (i, k) in ledger::find_person(self.conn, &h.person)? {
            if !i.is_kouki() {
                continue;
            }
            let Some(e) = ledger::load_enrollment(self.conn, i, k)? else {
                continue;
            };
            let transition = e
                .current_period()
                .is_some_and(|p| p.reason_of_qualification.is_transition());
            if e.status != Status::Cancelled && transition && h.person.resident_match_only(&e.person()) {
                self.review.push(ReviewItem::new(
                    (i, k),
                    vec![hk],
                    "a flagged hand-off has the same municipality, 宛名番号 and birthdate but another My Number: no carry; check the My Number (R3)",
                    true,
                ));
            }
        }
        Ok(())
    }

    /// Late carries (R3), after both waves: hand-offs not consumed by a registration of this run
    /// are matched to registrations already held, and 国保 enrollments that got a protective flag
    /// in this run are matched to registrations made earlier.
    ///
    /// A registration found this way is resolved like a new one (R3 over the ledger's 国保
    /// enrollments and every hand-off, stored or of this run): one candidate carries, several
    /// go to review and carry nothing. Hand-offs that took part in an ambiguous resolution in
    /// this run stay pending (they are in the review worklist already).
    pub(super) fn late_carries(&mut self) -> Result<Vec<CarryDone>> {
        let mut late = Vec::new();
        let run_handoffs = std::mem::take(&mut self.run_handoffs);
        let mut matched: BTreeMap<SubKey, SubKey> = BTreeMap::new();
        let targets = self.late_targets(&run_handoffs, &mut matched)?;
        for (k, via) in targets {
            if let Some(done) = self.late_carry(k, &via, &run_handoffs, &mut matched)? {
                late.push(done);
            }
        }
        self.settle_handoffs(run_handoffs, matched)?;
        // in hand-off order, as before
        late.sort_by_key(|c| c.source.from);
        Ok(late)
    }

    /// 後期 transition registrations of `person` in the ledger (R3 match).
    fn transition_regs(&self, person: &PersonKey) -> Result<Vec<SubKey>> {
        Ok(matching_enrollments(self.conn, self.lookup, person, |i| i.is_kouki())?
            .into_iter()
            .filter(|(e, _)| {
                e.current_period()
                    .is_some_and(|p| p.reason_of_qualification.is_transition())
            })
            .map(|(e, _)| (e.insurer, e.key))
            .collect())
    }

    /// The registrations a late carry may reach, each with what points at it: hand-offs of this
    /// run not consumed by a registration, hand-offs kept from earlier runs, and 国保
    /// enrollments that got a protective flag in this run. Hand-offs consumed at a 資格取得 of
    /// this run go into `matched`.
    fn late_targets(
        &mut self,
        run_handoffs: &BTreeMap<SubKey, StoredHandoff>,
        matched: &mut BTreeMap<SubKey, SubKey>,
    ) -> Result<Targets> {
        let conn = self.conn;
        let mut targets = Targets::new();
        for (hk, h) in run_handoffs {
            if let Some(to) = self.used_handoffs.get(hk) {
                matched.insert(*hk, *to);
                continue;
            }
            if self.ambiguous_handoffs.contains(hk) {
                continue;
            }
            let regs = self.transition_regs(&h.person)?;
            match regs.len() {
                0 => self.review_other_number(*hk, h)?,
                1 => targets
                    .entry(regs[0])
                    .or_default()
                    .push((h.origin.split('#').next().unwrap_or("").to_owned(), Some(*hk))),
                _ => self.review.push(ReviewItem::new(
                    *hk,
                    regs,
                    "hand-off matches several 後期 registrations: no carry",
                    true,
                )),
            }
        }
        // hand-offs kept unmatched from earlier runs (e.g. an ambiguity since resolved by a 取消):
        // their registrations are resolved again
        if !self.empty.handoff {
            for h in ledger::list_pending_handoffs(conn)? {
                let hk = (h.source_insurer, h.source_key);
                if run_handoffs.contains_key(&hk) || self.used_handoffs.contains_key(&hk) {
                    continue; // handled above, or carried at a 資格取得 of this run
                }
                let regs = self.transition_regs(&h.person)?;
                if regs.is_empty() {
                    self.review_other_number(hk, &h)?;
                }
                // a registration made in this run was resolved at its acquisition: what its own
                // later events did (a pending release applied after the carry) stands
                if let [reg] = regs[..]
                    && !self.acquired_regs.contains(&reg)
                {
                    targets
                        .entry(reg)
                        .or_default()
                        .push((h.origin.split('#').next().unwrap_or("").to_owned(), Some(hk)));
                }
            }
        }
        for person in std::mem::take(&mut self.newly_flagged) {
            // a registration made in this run saw these flags at its acquisition already: what its
            // own later events did to them (a release) stands
            for reg in self
                .transition_regs(&person)?
                .into_iter()
                .filter(|r| !self.acquired_regs.contains(r))
            {
                targets
                    .entry(reg)
                    .or_default()
                    .push(("国保 flag set after the registration".into(), None));
            }
        }
        Ok(targets)
    }

    /// The late carry onto registration `k` (see [`Applier::late_carries`]): resolved by R3 like
    /// a new registration; carried, listed or left alone. `via`: what points at it (origin for
    /// the journal, the hand-off of this run if one). Hand-offs it used go into `matched`.
    fn late_carry(
        &mut self,
        k: SubKey,
        via: &[(String, Option<SubKey>)],
        run_handoffs: &BTreeMap<SubKey, StoredHandoff>,
        matched: &mut BTreeMap<SubKey, SubKey>,
    ) -> Result<Option<CarryDone>> {
        let conn = self.conn;
        if self.ambiguous_regs.contains(&k) {
            return Ok(None); // resolved as ambiguous in this run already
        }
        let Some(e) = ledger::load_enrollment(conn, k.0, k.1)? else {
            return Ok(None);
        };
        if e.status == Status::Cancelled {
            return Ok(None);
        }
        let r = resolve_carry(conn, self.lookup, self.empty, &e.person(), run_handoffs)?;
        let mut src = match r.carry {
            Some(Carry::Flags(src)) => src,
            Some(Carry::Ambiguous(cands)) => {
                let lacks = (r.flagged_si && e.flag(FlagType::SelfInfoProvisionProhibited).is_none())
                    || (r.flagged_nd && e.flag(FlagType::NonDisclosure).is_none());
                if lacks {
                    // the writer withholds it (ambiguous, flagged, lacking the protection) and
                    // lists it, this night and every later one until resolved (R4, R14). One
                    // that holds what the candidates state is not written again: nothing
                    // changed for it, and a pending hand-off is resolved every night
                    scratch::touch(conn, k.0, k.1, Some(&e))?;
                } else {
                    self.review.push(ReviewItem::new(
                        k,
                        cands,
                        "late hand-off or 国保 flag for a registration with several possible 国保 enrollments: no carry",
                        false,
                    ));
                }
                return Ok(None);
            }
            None => return Ok(None),
        };
        let by_handoff = via.iter().any(|v| v.1.is_some());
        if !by_handoff {
            src.via = CarryVia::FlagAfterRegistration;
        }
        let mut after = e.clone();
        let transition_date = e.current_period().map(|p| p.qualification_date).expect("has a period");
        let time = src.set_time.unwrap_or_else(|| Timestamp::start_of(transition_date));
        let (carried, over_release) = carry_onto(
            &mut after,
            src.self_info,
            src.non_disclosure,
            time,
            &src.flag_times,
            src.from,
        );
        for t in over_release {
            self.review.push(ReviewItem::new(
                k,
                vec![src.from],
                format!(
                    "{} carried from {}/{} is older than the registration's own release of it (R1a): set again, protection wins",
                    t.name_ja(),
                    src.from.0,
                    src.from.1
                ),
                false,
            ));
        }
        if carried.is_empty() && !by_handoff {
            return Ok(None); // the registration holds these flags already
        }
        ledger::journal(
            conn,
            self.run_id,
            Some(via[0].0.as_str()),
            None,
            Some(k),
            JournalEvent::Carry,
            &format!(
                "flags carried from {}/{} ({})",
                src.from.0,
                src.from.1,
                if by_handoff {
                    "handoff after registration"
                } else {
                    "国保 flag set after registration"
                }
            ),
        )?;
        for hk in &r.handoffs_used {
            matched.insert(*hk, k);
        }
        self.confirm_narrowed(k, r.narrowed);
        if src.auto_response && after.flag(FlagType::AutoResponseProhibited).is_none() {
            self.out.flag_confirmation.push((
                k,
                src.from,
                vec![FlagType::AutoResponseProhibited],
                "自動応答不可 at the previous insurer is not carried: confirm with the person".into(),
            ));
        }
        if carried.is_empty() {
            // a hand-off that adds nothing (e.g. R13's nightly follow-up answer repeating
            // flags carried already) is matched without a carry entry
            return Ok(None);
        }
        let done = CarryDone {
            source: src,
            to: k,
            qualification_date: transition_date,
            flags: carried.clone(),
        };
        // the pre-run state is `e` unless this run touched it already
        scratch::touch(conn, k.0, k.1, Some(&e))?;
        after.published = stored_published(&after);
        ledger::store_enrollment(conn, &after, true)?;
        Ok(Some(done))
    }

    /// Stores this run's hand-offs (matched or pending) and marks the kept ones a registration
    /// consumed.
    fn settle_handoffs(
        &mut self,
        run_handoffs: BTreeMap<SubKey, StoredHandoff>,
        mut matched: BTreeMap<SubKey, SubKey>,
    ) -> Result<()> {
        let conn = self.conn;
        for (hk, mut h) in run_handoffs {
            if let Some(to) = matched.remove(&hk) {
                h.matched = Some(to);
                self.out.handoffs_matched += 1;
            }
            ledger::upsert_handoff(conn, &h)?;
        }
        // hand-offs kept from earlier runs that a registration of this run consumed
        for (hk, to) in self.used_handoffs.iter().map(|(h, t)| (*h, *t)).chain(matched) {
            if ledger::mark_handoff_matched(conn, hk, to)? {
                self.out.handoffs_matched += 1;
            }
        }
        Ok(())
    }
}
