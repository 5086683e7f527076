//! The generator's files and rows: opening a file (header, name, buffered writer), filling the
//! rows of a synthetic person (資格取得, the union's registration, a hand-off, flag settings) and
//! finishing a file (trailer, flush, sync).

use super::person::{Flags, Person};
use super::{
    GenerateOptions, GeneratedFile, Row, data, kokuho_insurer_number, kouki_insurer_number, mix64, municipality_code,
};
use crate::domain::{Date, FileKind, Timestamp};
use crate::formats::writer::{RecordWriter, UnmappablePolicy};
use crate::formats::{FileHeader, TextEncoding};
use anyhow::Context;
use chrono::TimeDelta;
use std::io::{BufWriter, Write};
use std::path::Path;

/// One file being written.
pub(super) struct Out {
    name: String,
    kind: FileKind,
    w: RecordWriter<BufWriter<std::fs::File>>,
    replaced: u64,
}

impl Out {
    /// Writes the trailer, flushes and syncs the file.
    pub fn finish(self) -> anyhow::Result<GeneratedFile> {
        let (mut bw, records, bytes) = self.w.finish().with_context(|| format!("writing {}", self.name))?;
        bw.flush()?;
        bw.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(GeneratedFile {
            name: self.name,
            kind: self.kind,
            records,
            bytes,
            replaced: self.replaced,
        })
    }

    pub fn put(&mut self, row: &mut Row) -> anyhow::Result<()> {
        let replaced = row
            .write_to(&mut self.w)
            .with_context(|| format!("writing {}", self.name))?;
        self.replaced += replaced.len() as u64;
        Ok(())
    }
}

/// Finishes the files in this order.
pub(super) fn finish_all(files: impl IntoIterator<Item = Out>) -> anyhow::Result<Vec<GeneratedFile>> {
    files.into_iter().map(Out::finish).collect()
}

/// Opens the files of one generation: all in one folder, their FileIdentifier dated `id_date`,
/// created five minutes apart from `first`.
pub(super) struct Opener<'a> {
    opts: &'a GenerateOptions,
    out: &'a Path,
    policy: UnmappablePolicy,
    id_date: Date,
    first: Timestamp,
    minute: i64,
}

impl<'a> Opener<'a> {
    pub fn new(opts: &'a GenerateOptions, out: &'a Path, id_date: Date, first: Timestamp) -> Self {
        let policy = match opts.encoding {
            TextEncoding::Utf8 => UnmappablePolicy::Reject,
            TextEncoding::ShiftJis => UnmappablePolicy::Replace,
        };
        Opener {
            opts,
            out,
            policy,
            id_date,
            first,
            minute: 0,
        }
    }

    /// Opens one generated file: header, name `<Kind>_<sender>_<seq>.<ext>`, buffered writer.
    pub fn open(&mut self, kind: FileKind, sender: &str, seq: u64, abbr: &str) -> anyhow::Result<Out> {
        let creation = Timestamp(self.first.0 + TimeDelta::minutes(self.minute));
        self.minute += 5;
        let opts = self.opts;
        let header = FileHeader {
            kind,
            file_identifier: file_identifier(opts.seed, abbr, sender, self.id_date),
            sender: crate::domain::InsurerNumber::parse(sender).expect("generated insurer numbers are valid"),
            creation_time: creation,
            file_sequence: seq,
            format: opts.format,
            encoding: opts.encoding,
        };
        let name = format!("{}_{sender}_{seq:04}.{}", kind.name(), opts.format.extension());
        let path = self.out.join(&name);
        let f = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let w = RecordWriter::start(BufWriter::with_capacity(1 << 20, f), header, self.policy)?;
        Ok(Out {
            name,
            kind,
            w,
            replaced: 0,
        })
    }
}

fn file_identifier(seed: u64, abbr: &str, sender: &str, as_of: Date) -> String {
    format!("G{:08X}-{abbr}-{sender}-{as_of}", mix64(seed) as u32)
}

/// A municipality's numbers: 地方公共団体コード, its 国保 and its union's 後期 保険者番号.
pub(super) struct MuniCodes {
    pub muni_code: String,
    pub kokuho: String,
    pub kouki: String,
}

/// The numbers of every municipality of [`data::MUNICIPALITIES`], in its order.
pub(super) fn muni_codes() -> Vec<MuniCodes> {
    data::MUNICIPALITIES
        .iter()
        .map(|m| MuniCodes {
            muni_code: municipality_code(m.code_body),
            kokuho: kokuho_insurer_number(m.code_body),
            kouki: kouki_insurer_number(m.code_body),
        })
        .collect()
}

/// One Scope-1 FlagChange row's values besides the subscriber.
pub(super) struct FlagSetting<'a> {
    pub time: &'a str,
    pub flag_type: &'a str,
    pub operation: &'a str,
    pub reason: &'a str,
    pub source: &'a str,
    pub support_end: &'a str,
}

/// Fills `fc` as a whole-subscriber (Scope 1) FlagChange row.
pub(super) fn subscriber_flag(fc: &mut Row, s: &FlagSetting<'_>, insurer: &str, key: &str) {
    fc.set("EffectiveTime", s.time)
        .set("FlagType", s.flag_type)
        .set("Operation", s.operation)
        .set("Scope", "1")
        .set("InsurerNumber", insurer)
        .set("SubscriberKey", key)
        .set("InfoCode", "")
        .set("ReasonCode", s.reason)
        .set("Source", s.source)
        .set("SupportMeasureEndDate", s.support_end);
}

/// A 国保 member's SubscriberKey: the insurer number without its leading zeros, then the index.
pub(super) fn kokuho_key(kokuho: &str, i: u64) -> String {
    format!("{}{:010}", &kokuho[2..], i + 1)
}

/// Fills `sc` as the person's 国保 資格取得 on `since` (every field set).
pub(super) fn fill_acquisition(sc: &mut Row, p: &Person, kokuho: &str, muni_code: &str, since: Date, reason: &str) {
    let i = p.index;
    sc.set("ChangeType", "1")
        .set("EffectiveDate", since.to_string())
        .set("InsurerNumber", kokuho)
        .set("SubscriberKey", kokuho_key(kokuho, i))
        .set("InsuredCardSymbol", &kokuho[4..7])
        .set("InsuredIdentificationNumber", format!("{:08}", i + 1))
        .set("InsuredBranchNumber", if p.family == "1" { "01" } else { "02" })
        .set("IndividualNumber", p.my_number.as_deref().unwrap_or(""))
        .set("MunicipalityCode", muni_code)
        .set("ResidentCode", format!("{:010}", i + 1))
        .set("Name", &p.name)
        .set("NameKana", &p.kana)
        .set("Sex1", p.sex)
        .set("Birthdate", p.birth.to_string())
        .set("QualificationDate", since.to_string())
        .set("ReasonOfQualification", reason)
        .set("DisqualificationDate", "")
        .set("ReasonOfLoss", "")
        .set("PersonalFamilyClassification", p.family)
        .set("PostNumber", p.post)
        .set("Address", &p.address);
}

/// Turns `sc`, filled by [`fill_acquisition`] for the same person, into the union's 後期 資格取得 on
/// `q` (identity, municipality, 宛名番号 and address kept, so that the carry can match).
pub(super) fn fill_union_registration(sc: &mut Row, p: &Person, kouki: &str, q: Date, reason: &str) {
    sc.set("ChangeType", "1")
        .set("EffectiveDate", q.to_string())
        .set("InsurerNumber", kouki)
        .set("SubscriberKey", format!("{kouki}{:08}", p.index + 1))
        .set("InsuredCardSymbol", "")
        .set("InsuredIdentificationNumber", format!("{:08}", 10_000_000 + p.index))
        .set("InsuredBranchNumber", "00")
        .set("QualificationDate", q.to_string())
        .set("ReasonOfQualification", reason)
        .set("PersonalFamilyClassification", "1");
}

/// Fills `ho` as the 国保's hand-off of a flagged member turning 75 on `a`.
pub(super) fn fill_handoff(ho: &mut Row, p: &Person, kokuho: &str, muni_code: &str, a: Date, f: &Flags) {
    ho.set("SourceInsurerNumber", kokuho)
        .set("SourceSubscriberKey", kokuho_key(kokuho, p.index))
        .set("IndividualNumber", p.my_number.as_deref().unwrap_or(""))
        .set("MunicipalityCode", muni_code)
        .set("ResidentCode", format!("{:010}", p.index + 1))
        .set("Name", &p.name)
        .set("NameKana", &p.kana)
        .set("Sex1", p.sex)
        .set("Birthdate", p.birth.to_string())
        .set("AgeTransitionDate", a.to_string())
        .set("SelfInfoProvisionProhibitedFlg", f.self_info.unwrap_or("0"))
        .set("NonDisclosureFlg", if f.non_disclosure { "1" } else { "0" })
        .set("AutoResponseProhibitedFlg", if f.auto_response { "1" } else { "0" })
        .set("FlagSetTime", f.set_time.to_string());
}

/// Writes the person's flags as Scope-1 settings (自己情報提供不可, 不開示該当, 自動応答不可 in that
/// order) at `time`.
pub(super) fn put_flags(
    out: &mut Out,
    fc: &mut Row,
    f: &Flags,
    time: &str,
    end: &str,
    kokuho: &str,
    key: &str,
) -> anyhow::Result<()> {
    let set = |flag_type, reason| FlagSetting {
        time,
        flag_type,
        operation: "1",
        reason,
        source: f.source,
        support_end: end,
    };
    if let Some(reason) = f.self_info {
        subscriber_flag(fc, &set("3", reason), kokuho, key);
        out.put(fc)?;
    }
    if f.non_disclosure {
        subscriber_flag(fc, &set("2", ""), kokuho, key);
        out.put(fc)?;
    }
    if f.auto_response {
        subscriber_flag(fc, &set("1", ""), kokuho, key);
        out.put(fc)?;
    }
    Ok(())
}
