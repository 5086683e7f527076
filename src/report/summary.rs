//! report.json's `summary`: counters by [`SummaryKey`], written as one JSON object whose keys
//! are in byte order of their names (what a map of strings gave before the keys were typed, so
//! report.json is unchanged).

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// One counter of report.json's `summary`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SummaryKey {
    // run (spec §6)
    FilesApplied,
    FilesSkipped,
    FilesRejected,
    RecordsRejected,
    EventsApplied,
    SubscribersWritten,
    Carries,
    /// Registrations withheld from the linkage (R4, R13): critical.
    Withheld,
    Unpublished,
    PendingFlagsApplied,
    HandoffsReceived,
    HandoffsMatched,
    /// 年齢到達照会 written (R13).
    Inquiries,
    InquiriesWithheld,
    InquiryAnswersUnused,
    /// 後期 transition registrations of the run whose 資格取得 falls in the month (`YYYYMM`).
    KoukiTransitions(String),
    // age-transition extract
    Upcoming,
    Missed,
    AlreadyKoukiByDisability,
    /// Upcoming transitions in the month (`YYYYMM`).
    UpcomingIn(String),
    // migrate
    FlagLosses,
    FlagsToSet,
    FlagLossesAccepted,
    MigrationNew,
    MigrationChanged,
    MigrationUnchanged,
    MigrationAbsent,
    MigrationRejected,
    MigrationUnapplied,
}

/// The keys without a month, by name.
const FIXED: [(&str, SummaryKey); 27] = [
    ("files_applied", SummaryKey::FilesApplied),
    ("files_skipped", SummaryKey::FilesSkipped),
    ("files_rejected", SummaryKey::FilesRejected),
    ("records_rejected", SummaryKey::RecordsRejected),
    ("events_applied", SummaryKey::EventsApplied),
    ("subscribers_written", SummaryKey::SubscribersWritten),
    ("carries", SummaryKey::Carries),
    ("withheld", SummaryKey::Withheld),
    ("unpublished", SummaryKey::Unpublished),
    ("pending_flags_applied", SummaryKey::PendingFlagsApplied),
    ("handoffs_received", SummaryKey::HandoffsReceived),
    ("handoffs_matched", SummaryKey::HandoffsMatched),
    ("inquiries", SummaryKey::Inquiries),
    ("inquiries_withheld", SummaryKey::InquiriesWithheld),
    ("inquiry_answers_unused", SummaryKey::InquiryAnswersUnused),
    ("upcoming", SummaryKey::Upcoming),
    ("missed", SummaryKey::Missed),
    ("already_kouki_by_disability", SummaryKey::AlreadyKoukiByDisability),
    ("flag_losses", SummaryKey::FlagLosses),
    ("flags_to_set", SummaryKey::FlagsToSet),
    ("flag_losses_accepted", SummaryKey::FlagLossesAccepted),
    ("migration_new", SummaryKey::MigrationNew),
    ("migration_changed", SummaryKey::MigrationChanged),
    ("migration_unchanged", SummaryKey::MigrationUnchanged),
    ("migration_absent", SummaryKey::MigrationAbsent),
    ("migration_rejected", SummaryKey::MigrationRejected),
    ("migration_unapplied", SummaryKey::MigrationUnapplied),
];

const KOUKI_TRANSITIONS: &str = "kouki_transitions_";
const UPCOMING_IN: &str = "upcoming_";

fn is_month(m: &str) -> bool {
    m.len() == 6 && m.bytes().all(|b| b.is_ascii_digit())
}

impl SummaryKey {
    /// The name report.json gives it.
    pub fn name(&self) -> Cow<'static, str> {
        match self {
            SummaryKey::KoukiTransitions(m) => format!("{KOUKI_TRANSITIONS}{m}").into(),
            SummaryKey::UpcomingIn(m) => format!("{UPCOMING_IN}{m}").into(),
            k => FIXED
                .iter()
                .find(|(_, f)| f == k)
                .map(|(n, _)| Cow::Borrowed(*n))
                .expect("every key without a month is in the table"),
        }
    }

    /// The key of a name report.json gives; `None` for a name this program never writes.
    pub fn from_name(name: &str) -> Option<Self> {
        if let Some((_, k)) = FIXED.iter().find(|(n, _)| *n == name) {
            return Some(k.clone());
        }
        if let Some(m) = name.strip_prefix(KOUKI_TRANSITIONS).filter(|m| is_month(m)) {
            return Some(SummaryKey::KoukiTransitions(m.to_owned()));
        }
        name.strip_prefix(UPCOMING_IN)
            .filter(|m| is_month(m))
            .map(|m| SummaryKey::UpcomingIn(m.to_owned()))
    }
}

/// Ordered by name, as report.json lists them.
impl Ord for SummaryKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.name().cmp(&other.name())
    }
}

impl PartialOrd for SummaryKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// report.json's `summary`: counters by key, listed by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary(BTreeMap<SummaryKey, u64>);

impl Summary {
    /// The counter, when the report has it.
    pub fn get(&self, k: &SummaryKey) -> Option<u64> {
        self.0.get(k).copied()
    }

    /// The counter, 0 when the report does not have it.
    pub fn count(&self, k: &SummaryKey) -> u64 {
        self.get(k).unwrap_or(0)
    }

    /// Sets the counter.
    pub fn set(&mut self, k: SummaryKey, n: u64) {
        self.0.insert(k, n);
    }

    /// Adds to the counter (a missing one counts from 0).
    pub fn add(&mut self, k: SummaryKey, n: u64) {
        *self.0.entry(k).or_insert(0) += n;
    }

    /// The counter to change in place (a missing one starts at 0).
    pub fn entry(&mut self, k: SummaryKey) -> &mut u64 {
        self.0.entry(k).or_insert(0)
    }

    /// Counters by name.
    pub fn iter(&self) -> impl Iterator<Item = (&SummaryKey, u64)> {
        self.0.iter().map(|(k, v)| (k, *v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Summary {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(&k.name(), v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Summary {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Summary;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of counters")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Summary, A::Error> {
                let mut out = Summary::default();
                while let Some((name, n)) = a.next_entry::<Cow<'de, str>, u64>()? {
                    let k = SummaryKey::from_name(&name)
                        .ok_or_else(|| de::Error::custom("a summary counter this program never writes"))?;
                    out.set(k, n);
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_as_its_key() {
        for (n, k) in FIXED.iter() {
            assert_eq!(k.name(), *n);
            assert_eq!(SummaryKey::from_name(n).as_ref(), Some(k));
        }
        let m = SummaryKey::KoukiTransitions("202504".into());
        assert_eq!(m.name(), "kouki_transitions_202504");
        assert_eq!(SummaryKey::from_name("kouki_transitions_202504"), Some(m));
        assert_eq!(
            SummaryKey::from_name("upcoming_202701"),
            Some(SummaryKey::UpcomingIn("202701".into()))
        );
        assert_eq!(SummaryKey::from_name("upcoming_2027"), None);
        assert_eq!(SummaryKey::from_name(""), None);
        assert_eq!(SummaryKey::from_name("whatever"), None);
    }

    #[test]
    fn serialised_in_name_order_as_a_map_of_strings_was() {
        let mut s = Summary::default();
        let mut m = BTreeMap::new();
        for (i, (n, k)) in FIXED.iter().enumerate() {
            s.set(k.clone(), i as u64);
            m.insert(n.to_string(), i as u64);
        }
        s.set(SummaryKey::KoukiTransitions("202612".into()), 7);
        m.insert("kouki_transitions_202612".into(), 7);
        s.add(SummaryKey::UpcomingIn("202701".into()), 3);
        m.insert("upcoming_202701".into(), 3);
        let json = serde_json::to_string_pretty(&s).unwrap();
        assert_eq!(json, serde_json::to_string_pretty(&m).unwrap());
        assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), s);
        assert!(serde_json::from_str::<Summary>(r#"{"nonsense": 1}"#).is_err());
    }
}
