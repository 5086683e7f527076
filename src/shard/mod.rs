//! Scale-out: `run --shard I/N` processes only the subscribers whose stable hash of
//! (InsurerNumber, SubscriberKey) modulo N is I; `merge-shards` ([`merge`]) joins the N
//! shard runs into the run a single process would have published.
//!
//! **How persons are keyed.** A subscriber is the pair (InsurerNumber, SubscriberKey): its
//! SubscriberChange, Fukuhon and subscriber-scoped FlagChange records go to the shard
//! `fnv1a64(insurer ‖ 0x1F ‖ key) mod N`. Insurer-level data — AgeTransitionHandoff records and
//! Scope-2 (InfoCode for all subscribers) FlagChange records — is replicated to every shard: a
//! 後期 shard sees every hand-off, so the carry (R3) finds the 国保 side whichever shard holds
//! the registration. A carry from a 国保 enrollment held in the *same ledger* would need another
//! shard's ledger, so a sharded run refuses a ledger or inbox holding both 国保 and 後期
//! subscribers ([`Gate::check`]): sharded, the 国保 side and the union keep separate ledgers and
//! the 国保 side's `age-transition extract` hand-offs carry the flags.
//!
//! A shard run's id is the unsharded run id plus `-s{I}of{N}`, so reruns stay deterministic and
//! `merge-shards` can name the merged folder by the unsharded id.

mod found;
mod kway;
pub mod merge;
mod merged_report;

use crate::domain::{FlagScope, InsurerKind, InsurerNumber, Record, SubscriberKey};
use crate::ledger::{self, JournalEvent};
use crate::report::{Report, SummaryKey};
use anyhow::{Result, bail};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// One shard of N: `index` in `0..count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a64(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The stable hash of a subscriber: FNV-1a 64 over the InsurerNumber's canonical 8-digit string,
/// a 0x1F (unit separator) byte and the 16-digit SubscriberKey. Fixed by this definition, so it
/// is the same on every platform and in every release.
pub fn subscriber_hash(insurer: InsurerNumber, key: SubscriberKey) -> u64 {
    let h = fnv1a64(FNV_OFFSET, insurer.as_str().as_bytes());
    let h = fnv1a64(h, &[0x1F]);
    fnv1a64(h, key.as_str().as_bytes())
}

/// Where a record goes in a sharded run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// To the shard of this subscriber.
    Subscriber(InsurerNumber, SubscriberKey),
    /// To every shard (insurer-level data: hand-offs, Scope-2 flag changes).
    Replicated,
}

impl Route {
    /// The routing of one record (subscriber-scoped FlagChange as the engine reads it: Scope 1
    /// with a SubscriberKey; anything else applies insurer-wide).
    pub fn of(rec: &Record) -> Route {
        match rec {
            Record::SubscriberChange(c) => Route::Subscriber(c.insurer, c.key),
            Record::Fukuhon(f) => Route::Subscriber(f.insurer, f.key),
            Record::FlagChange(f) => match f.key {
                Some(k) if f.scope == FlagScope::Subscriber => Route::Subscriber(f.insurer, k),
                _ => Route::Replicated,
            },
            Record::AgeTransitionHandoff(_) | Record::AgeTransitionInquiry(_) => Route::Replicated,
        }
    }
}

impl Shard {
    /// Parses `I/N` (0 ≤ I < N, N ≥ 1).
    pub fn parse(s: &str) -> Result<Shard, String> {
        let usage = "--shard takes I/N: this shard's index I and the number of shards N, with 0 ≤ I < N (e.g. 0/4)";
        let (i, n) = s.trim().split_once('/').ok_or_else(|| format!("{usage}; got no '/'"))?;
        let num = |t: &str, what: &str| -> Result<u32, String> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{usage}; {what} is not a whole number"));
            }
            t.parse::<u32>().map_err(|_| format!("{usage}; {what} is too large"))
        };
        let (index, count) = (num(i, "I")?, num(n, "N")?);
        if count == 0 {
            return Err(format!("{usage}; N must be at least 1"));
        }
        if index >= count {
            return Err(format!("{usage}; I = {index} is not below N = {count}"));
        }
        Ok(Shard { index, count })
    }

    /// The shard a subscriber belongs to among `count`.
    pub fn of_subscriber(count: u32, insurer: InsurerNumber, key: SubscriberKey) -> u32 {
        (subscriber_hash(insurer, key) % u64::from(count)) as u32
    }

    /// Whether this shard holds the subscriber.
    pub fn owns(&self, insurer: InsurerNumber, key: SubscriberKey) -> bool {
        Self::of_subscriber(self.count, insurer, key) == self.index
    }

    /// Whether a sharded run keeps the record: its subscriber's records when this shard owns the
    /// subscriber, insurer-level records always.
    pub fn keeps(&self, rec: &Record) -> bool {
        match Route::of(rec) {
            Route::Subscriber(i, k) => self.owns(i, k),
            Route::Replicated => true,
        }
    }

    /// What the run id of this shard ends with.
    pub fn suffix(&self) -> String {
        format!("-s{}of{}", self.index, self.count)
    }

    /// Splits a shard run id into the unsharded run id and the shard (`None` for other ids).
    pub fn split_run_id(id: &str) -> Option<(&str, Shard)> {
        let (base, tail) = id.rsplit_once("-s")?;
        let (i, n) = tail.split_once("of")?;
        let digits =
            |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && (t == "0" || !t.starts_with('0'));
        if base.is_empty() || !digits(i) || !digits(n) {
            return None;
        }
        let s = Shard {
            index: i.parse().ok()?,
            count: n.parse().ok()?,
        };
        (s.count >= 1 && s.index < s.count).then_some((base, s))
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Shard::parse(s)
    }
}

/// The shard a ledger was written by, from the run ids it recorded (`None`: never sharded).
pub fn ledger_shard(conn: &Connection) -> Result<Option<Shard>> {
    let ids = ledger::run_ids(conn)?;
    let mut found: Option<Shard> = None;
    for id in &ids {
        if let Some((_, s)) = Shard::split_run_id(id) {
            match found {
                Some(f) if f != s => {
                    bail!("this ledger holds runs of shard {f} and of shard {s}: it is not one shard's ledger")
                }
                _ => found = Some(s),
            }
        }
    }
    Ok(found)
}

/// What `run` asks of sharding: which records it keeps, whether it may go ahead, its run id.
#[derive(Debug, Default)]
pub struct Gate {
    shard: Option<Shard>,
    kokuho: AtomicBool,
    kouki: AtomicBool,
}

impl Gate {
    pub fn new(shard: Option<Shard>) -> Gate {
        Gate {
            shard,
            ..Gate::default()
        }
    }

    /// Called for every accepted record of the inbox (from parallel readers): notes which kind
    /// of subscriber it is for [`Gate::check`], and says whether this run keeps it.
    pub fn admit(&self, rec: &Record) -> bool {
        let Some(shard) = self.shard else { return true };
        if let Route::Subscriber(i, _) = Route::of(rec) {
            if i.is_kokuho() {
                self.kokuho.store(true, Ordering::Relaxed);
            } else if i.is_kouki() {
                self.kouki.store(true, Ordering::Relaxed);
            }
        }
        shard.keeps(rec)
    }

    /// Before anything is applied. A sharded run is refused when its ledger and inbox together
    /// hold both 国保 and 後期 subscribers (a carry from the same ledger could need another shard's
    /// ledger), and any run is refused on a ledger written by another shard spec (or by a
    /// sharded run, when this one is not sharded): subscribers would silently change hands.
    pub fn check(&self, conn: &Connection) -> Result<()> {
        let written_by = ledger_shard(conn)?;
        match (self.shard, written_by) {
            (Some(s), Some(w)) if s != w => bail!(
                "this ledger belongs to shard {w} (its runs say so), not to shard {s}: give each shard its own \
                 ledger, outbox and reports, and keep N fixed (a new N needs new shard ledgers)"
            ),
            (None, Some(w)) => bail!(
                "this ledger belongs to shard {w} of a sharded deployment: run it with --shard {w}, or use an \
                 unsharded ledger"
            ),
            _ => {}
        }
        let Some(s) = self.shard else { return Ok(()) };
        let kokuho = self.kokuho.load(Ordering::Relaxed) || ledger::holds_subscribers_of(conn, InsurerKind::Kokuho)?;
        let kouki = self.kouki.load(Ordering::Relaxed) || ledger::holds_subscribers_of(conn, InsurerKind::Kouki)?;
        if kokuho && kouki {
            bail!(
                "a sharded run (--shard {s}) cannot hold both 国保 and 後期 subscribers in one ledger: a carry \
                 from a 国保 enrollment in the same ledger could need another shard's ledger. Run the 国保 side and \
                 the union with separate ledgers and let the 国保 side's `age-transition extract` hand-offs carry \
                 the flags (see docs/operators.md, section 11, scaling out with shards). Nothing was applied."
            );
        }
        Ok(())
    }

    /// The run id: the unsharded one, plus `-s{I}of{N}` in a sharded run.
    pub fn run_id(&self, unsharded: String) -> String {
        match self.shard {
            Some(s) => unsharded + &s.suffix(),
            None => unsharded,
        }
    }
}

/// Summary counters whose value in every shard includes the replicated (insurer-level) records,
/// so a merge subtracts the N−1 copies.
pub const REPLICATED_COUNTERS: [SummaryKey; 2] = [SummaryKey::EventsApplied, SummaryKey::HandoffsReceived];

/// The part of [`REPLICATED_COUNTERS`] that comes from the replicated records, in one shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicated {
    pub events_applied: u64,
    pub handoffs_received: u64,
}

impl Replicated {
    /// The replicated part of one of [`REPLICATED_COUNTERS`] (0 for another counter).
    pub fn of(&self, k: &SummaryKey) -> u64 {
        match k {
            SummaryKey::EventsApplied => self.events_applied,
            SummaryKey::HandoffsReceived => self.handoffs_received,
            _ => 0,
        }
    }
}

/// report.json's `shard` section, written by a shard run ([`annotate`]) and read by
/// `merge-shards`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSection {
    pub index: u32,
    pub count: u32,
    pub unsharded_run_id: String,
    pub key: String,
    pub replicated: Replicated,
    /// Hand-offs not matched in this shard's ledger (`insurer/key` of their 国保 side).
    pub pending_handoffs: Vec<String>,
    /// Worklist name → title.
    pub worklist_titles: BTreeMap<String, String>,
}

/// Adds what `merge-shards` needs to a shard run's report (key `shard` of report.json): the
/// shard, the replicated part of the counters, the hand-offs still pending in this ledger (a
/// merged run counts a hand-off as pending only if it is pending in every shard) and the titles
/// of the worklists. Does nothing in an unsharded run.
pub fn annotate(shard: Option<Shard>, conn: &Connection, report: &mut Report) -> Result<()> {
    let Some(s) = shard else { return Ok(()) };
    let base = Shard::split_run_id(&report.run_id).map_or(report.run_id.as_str(), |(b, _)| b);
    let insurer_flag_events = ledger::count_journal_events(conn, &report.run_id, JournalEvent::InsurerFlag)?;
    let pending = ledger::unmatched_handoff_sources(conn)?;
    let section = ShardSection {
        index: s.index,
        count: s.count,
        unsharded_run_id: base.to_owned(),
        key: "fnv1a64(InsurerNumber 0x1F SubscriberKey) mod count".into(),
        replicated: Replicated {
            events_applied: insurer_flag_events,
            handoffs_received: report.summary.count(&SummaryKey::HandoffsReceived),
        },
        pending_handoffs: pending,
        worklist_titles: report
            .worklist_rows
            .iter()
            .map(|(k, w)| (k.clone(), w.title.clone()))
            .collect(),
    };
    // through a JSON value: its keys come out in name order, as report.json has them
    report.extra.insert("shard".into(), serde_json::to_value(&section)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;

    fn ins(s: &str) -> InsurerNumber {
        InsurerNumber::parse(s).unwrap()
    }
    fn key(s: &str) -> SubscriberKey {
        SubscriberKey::parse(s).unwrap()
    }

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(FNV_OFFSET, b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(FNV_OFFSET, b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(FNV_OFFSET, b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn the_subscriber_hash_is_fixed() {
        // fixed values: a change here moves subscribers between shards of existing deployments
        assert_eq!(
            subscriber_hash(ins("00131045"), key("0000000000000001")),
            0xc96fb9e221077133
        );
        assert_eq!(
            subscriber_hash(ins("39130018"), key("0000000000900001")),
            0xac46f83b3d94f2f7
        );
        assert_eq!(
            subscriber_hash(ins("39130018"), key("1234567890123456")),
            0x5290a75a5dcb8053
        );
        // a 6-digit 国保 number hashes as its canonical 8-digit form
        assert_eq!(
            subscriber_hash(ins("131045"), key("0000000000000001")),
            subscriber_hash(ins("00131045"), key("0000000000000001"))
        );
        assert_eq!(Shard::of_subscriber(3, ins("00131045"), key("0000000000000001")), 0);
        assert_eq!(Shard::of_subscriber(3, ins("39130018"), key("0000000000900001")), 2);
        assert_eq!(Shard::of_subscriber(16, ins("39130018"), key("0000000000900001")), 7);
        assert_eq!(Shard::of_subscriber(1, ins("39130018"), key("0000000000900001")), 0);
    }

    #[test]
    fn every_subscriber_has_exactly_one_shard_and_shards_are_balanced() {
        let n = 4;
        let mut per = [0u32; 4];
        for k in 0..4000u64 {
            let (i, k) = (ins("39130018"), key(&format!("{k:016}")));
            let owners: Vec<u32> = (0..n).filter(|&x| Shard { index: x, count: n }.owns(i, k)).collect();
            assert_eq!(owners.len(), 1);
            per[owners[0] as usize] += 1;
        }
        assert!(per.iter().all(|&c| (900..1100).contains(&c)), "{per:?}");
    }

    #[test]
    fn parse_and_usage_errors() {
        assert_eq!(Shard::parse("0/1").unwrap(), Shard { index: 0, count: 1 });
        assert_eq!(Shard::parse("2/3").unwrap(), Shard { index: 2, count: 3 });
        assert_eq!("1/16".parse::<Shard>().unwrap().to_string(), "1/16");
        for (bad, why) in [
            ("3/3", "not below"),
            ("0/0", "at least 1"),
            ("1", "no '/'"),
            ("-1/3", "not a whole number"),
            ("a/3", "not a whole number"),
            ("1/", "not a whole number"),
            ("1/99999999999", "too large"),
        ] {
            let e = Shard::parse(bad).unwrap_err();
            assert!(e.contains("I/N") && e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn run_ids_carry_the_shard() {
        let s = Shard { index: 1, count: 3 };
        let g = Gate::new(Some(s));
        let id = g.run_id("20261201-0123456789ab".into());
        assert_eq!(id, "20261201-0123456789ab-s1of3");
        assert_eq!(Shard::split_run_id(&id), Some(("20261201-0123456789ab", s)));
        assert_eq!(Gate::new(None).run_id("x".into()), "x");
        for other in [
            "20261201-0123456789ab",
            "20261201-0123456789ab-s1of3-dry-run",
            "20261201-0123456789ab-s3of3",
            "20261201-0123456789ab-s01of3",
            "-s0of1",
            "extract-20261201",
        ] {
            assert_eq!(Shard::split_run_id(other), None, "{other}");
        }
    }

    fn change(insurer: &str, k: &str) -> Record {
        Record::SubscriberChange(SubscriberChange::keys_only(
            1,
            ChangeType::Update,
            Date::parse("20261201").unwrap(),
            ins(insurer),
            key(k),
        ))
    }

    fn flag(scope: FlagScope, k: Option<&str>) -> Record {
        Record::FlagChange(FlagChange {
            seq: 1,
            effective_time: Timestamp::parse("20261201090000").unwrap(),
            flag_type: FlagType::NonDisclosure,
            operation: FlagOperation::Set,
            scope,
            insurer: ins("39130018"),
            key: k.map(key),
            info_code: Some(InfoCode::parse("TM00000000000001").unwrap()),
            reason: None,
            source: FlagSource::PersonRequest,
            support_measure_end: None,
        })
    }

    #[test]
    fn subscriber_records_go_to_one_shard_insurer_level_records_to_all() {
        let shards: Vec<Shard> = (0..3).map(|index| Shard { index, count: 3 }).collect();
        let keeping = |r: &Record| shards.iter().filter(|s| s.keeps(r)).count();
        let k = "0000000000900001";
        assert_eq!(keeping(&change("39130018", k)), 1);
        assert!(shards[2].keeps(&change("39130018", k)));
        assert_eq!(keeping(&flag(FlagScope::Subscriber, Some(k))), 1);
        assert!(shards[2].keeps(&flag(FlagScope::Subscriber, Some(k))));
        assert_eq!(keeping(&flag(FlagScope::InfoCode, None)), 3, "Scope 2 is replicated");
        let h = Record::AgeTransitionHandoff(AgeTransitionHandoff {
            seq: 1,
            source_insurer: ins("00131045"),
            source_key: Some(key("0000000000000001")),
            individual_number: None,
            municipality: MunicipalityCode::parse("131041").unwrap(),
            resident: ResidentCode::parse("1001").unwrap(),
            name: "山田　花子".into(),
            name_kana: "ﾔﾏﾀﾞ ﾊﾅｺ".into(),
            sex: Sex1::Female,
            birthdate: Date::parse("19520110").unwrap(),
            transition_date: Date::parse("20270110").unwrap(),
            self_info: Some(SelfInfoReason::PersonReason),
            non_disclosure: true,
            auto_response: false,
            flag_set_time: None,
        });
        assert_eq!(keeping(&h), 3, "hand-offs are replicated");
    }

    #[test]
    fn a_sharded_run_refuses_kokuho_and_kouki_together() {
        let conn = crate::ledger::open(std::path::Path::new(":memory:")).unwrap();
        let g = Gate::new(Some(Shard { index: 0, count: 2 }));
        g.admit(&change("00131045", "0000000000000001"));
        g.check(&conn).unwrap();
        g.admit(&change("39130018", "0000000000900001"));
        let e = g.check(&conn).unwrap_err().to_string();
        assert!(
            e.contains("国保") && e.contains("後期") && e.contains("Nothing was applied"),
            "{e}"
        );
        // unsharded: no refusal, every record kept
        let g = Gate::new(None);
        assert!(g.admit(&change("00131045", "0000000000000001")));
        assert!(g.admit(&change("39130018", "0000000000900001")));
        g.check(&conn).unwrap();
    }

    #[test]
    fn a_ledger_stays_with_its_shard() {
        let conn = crate::ledger::open(std::path::Path::new(":memory:")).unwrap();
        conn.execute(
            "INSERT INTO run (run_id, as_of, status) VALUES ('20261201-0123456789ab-s1of3', '20261201', 'published')",
            [],
        )
        .unwrap();
        assert_eq!(ledger_shard(&conn).unwrap(), Some(Shard { index: 1, count: 3 }));
        Gate::new(Some(Shard { index: 1, count: 3 })).check(&conn).unwrap();
        let e = Gate::new(Some(Shard { index: 0, count: 3 })).check(&conn).unwrap_err();
        assert!(e.to_string().contains("belongs to shard 1/3"), "{e}");
        let e = Gate::new(None).check(&conn).unwrap_err();
        assert!(e.to_string().contains("--shard 1/3"), "{e}");
    }
}
