//! Compact binary codec for [`Record`]s: the on-disk spill of very large runs, written and read
//! back by the same process.
//!
//! Frame format (`u32` little-endian, `varint` unsigned LEB128, `zigzag` a signed varint):
//!
//! ```text
//! frame = len:u32  crc:u32  body[len]      crc = CRC-32C (Castagnoli) of body
//! body  = tag:varint  kind:u8  seq:varint  fields…   kind 0 SubscriberChange, 1 FlagChange,
//!                                                    2 Fukuhon, 3 AgeTransitionHandoff
//! ```
//!
//! Fields follow in declaration order. Code enums are one byte (their index in `ALL`), dates
//! `zigzag(days since 0001-01-01)`, timestamps a date plus `varint(seconds of day << 1 | has_nanos)`
//! and the nanoseconds if any, digit identifiers their digits as one `varint` (InfoCode without
//! `TM`; ResidentCode `value << 4 | digit count`, leading zeros being significant), text
//! `varint(byte length)` + UTF-8, Fukuhon items `varint(count)` + pairs of text. The optional
//! fields of a record (and the hand-off's two booleans) are a `varint` presence bitmap, bit *i*
//! for the *i*-th of them, followed by the present ones only.
//!
//! Spill files hold personal data in clear (a My Number is merely packed into an integer): they
//! belong in a private (0600) place and must be removed after the run. Errors carry offsets and
//! field names, never values.

use crate::domain::{
    AgeTransitionHandoff, ChangeType, Date, DisclosureClassification, FlagChange, FlagOperation, FlagScope, FlagSource,
    FlagType, Fukuhon, FukuhonOperation, IndividualNumber, InfoCode, InsuredBranchNumber, InsurerNumber,
    MunicipalityCode, PersonalFamilyClassification, PostNumber, ReasonOfLoss, ReasonOfQualification, Record,
    ResidentCode, SelfInfoReason, Sex1, SubscriberChange, SubscriberKey, Timestamp, text::Address,
};
use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};
use std::iter::FusedIterator;

/// Bytes before a frame's body: length and checksum.
const HEADER: usize = 8;

const KIND_SUBSCRIBER_CHANGE: u8 = 0;
const KIND_FLAG_CHANGE: u8 = 1;
const KIND_FUKUHON: u8 = 2;
const KIND_HANDOFF: u8 = 3;

/// A spill buffer that cannot be decoded. Messages name the frame's offset and, for a corrupt
/// frame, the field; never a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpillError {
    #[error("spill frame at byte {offset} is truncated")]
    Truncated { offset: usize },
    #[error("spill frame at byte {offset} fails its checksum")]
    Checksum { offset: usize },
    #[error("spill frame at byte {offset} is corrupt: {what}")]
    Corrupt { offset: usize, what: &'static str },
}

/// Appends one frame: `tag` (u32, the caller's file index) + the encoded record.
pub fn encode_frame(tag: u32, rec: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    let mut e = Enc(out);
    e.varint(u64::from(tag));
    match rec {
        Record::SubscriberChange(r) => {
            e.u8(KIND_SUBSCRIBER_CHANGE);
            e.subscriber_change(r);
        }
        Record::FlagChange(r) => {
            e.u8(KIND_FLAG_CHANGE);
            e.flag_change(r);
        }
        Record::Fukuhon(r) => {
            e.u8(KIND_FUKUHON);
            e.fukuhon(r);
        }
        Record::AgeTransitionHandoff(r) => {
            e.u8(KIND_HANDOFF);
            e.handoff(r);
        }
        Record::AgeTransitionInquiry(_) => unreachable!("inquiries are not spooled (run refuses them)"),
    }
    let body = &out[start + HEADER..];
    let len = u32::try_from(body.len()).expect("a record is far smaller than 4 GiB");
    let crc = crc32c(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Reads frames from a byte slice produced by [`encode_frame`] (possibly many concatenated).
/// Stops after the first error: past a damaged frame nothing can be trusted.
#[derive(Clone)]
pub struct FrameReader<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> FrameReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        FrameReader {
            buf,
            pos: 0,
            failed: false,
        }
    }

    /// Byte offset of the next frame.
    pub fn offset(&self) -> usize {
        self.pos
    }

    fn frame(&mut self) -> Result<(u32, Record), SpillError> {
        let offset = self.pos;
        let rest = &self.buf[offset..];
        let truncated = SpillError::Truncated { offset };
        let (header, rest) = rest.split_first_chunk::<HEADER>().ok_or(truncated.clone())?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let body = rest.get(..len).ok_or(truncated)?;
        if crc32c(body) != crc {
            return Err(SpillError::Checksum { offset });
        }
        let decoded = decode_body(body).map_err(|what| SpillError::Corrupt { offset, what })?;
        self.pos = offset + HEADER + len;
        Ok(decoded)
    }
}

impl Iterator for FrameReader<'_> {
    type Item = Result<(u32, Record), SpillError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let r = self.frame();
        self.failed = r.is_err();
        Some(r)
    }
}

impl FusedIterator for FrameReader<'_> {}

/// Shows the position only: the buffer holds personal data.
impl std::fmt::Debug for FrameReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("len", &self.buf.len())
            .field("pos", &self.pos)
            .field("failed", &self.failed)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

struct Enc<'a>(&'a mut Vec<u8>);

/// The digits of an identifier as one integer (non-digits, such as a PostNumber's hyphen, skipped).
fn pack_digits(s: &str) -> u64 {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .fold(0, |a, d| a * 10 + u64::from(d - b'0'))
}

fn presence(fields: &[bool]) -> u64 {
    fields
        .iter()
        .enumerate()
        .fold(0, |bits, (i, &p)| bits | (u64::from(p) << i))
}

impl Enc<'_> {
    fn u8(&mut self, b: u8) {
        self.0.push(b);
    }
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }
    fn text(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn digits(&mut self, s: &str) {
        self.varint(pack_digits(s));
    }
    fn date(&mut self, d: Date) {
        self.zigzag(i64::from(d.0.num_days_from_ce()));
    }
    fn timestamp(&mut self, t: Timestamp) {
        self.date(Date(t.0.date()));
        let secs = u64::from(t.0.num_seconds_from_midnight());
        let nanos = t.0.nanosecond();
        self.varint(secs << 1 | u64::from(nanos != 0));
        if nanos != 0 {
            self.varint(u64::from(nanos));
        }
    }
    fn resident(&mut self, r: &ResidentCode) {
        let s = r.as_str();
        self.varint(pack_digits(s) << 4 | s.len() as u64);
    }

    fn subscriber_change(&mut self, r: &SubscriberChange) {
        self.varint(r.seq);
        self.u8(r.change_type as u8);
        self.date(r.effective_date);
        self.digits(r.insurer.as_str());
        self.digits(r.key.as_str());
        self.varint(presence(&[
            r.card_symbol.is_some(),
            r.card_number.is_some(),
            r.branch.is_some(),
            r.individual_number.is_some(),
            r.municipality.is_some(),
            r.resident.is_some(),
            r.name.is_some(),
            r.name_kana.is_some(),
            r.sex.is_some(),
            r.birthdate.is_some(),
            r.qualification_date.is_some(),
            r.reason_of_qualification.is_some(),
            r.disqualification_date.is_some(),
            r.reason_of_loss.is_some(),
            r.personal_family.is_some(),
            r.post_number.is_some(),
            r.address.is_some(),
        ]));
        if let Some(v) = &r.card_symbol {
            self.text(v);
        }
        if let Some(v) = &r.card_number {
            self.text(v);
        }
        if let Some(v) = &r.branch {
            self.digits(v.as_str());
        }
        if let Some(v) = &r.individual_number {
            self.digits(v.expose());
        }
        if let Some(v) = &r.municipality {
            self.digits(v.as_str());
        }
        if let Some(v) = &r.resident {
            self.resident(v);
        }
        if let Some(v) = &r.name {
            self.text(v);
        }
        if let Some(v) = &r.name_kana {
            self.text(v);
        }
        if let Some(v) = r.sex {
            self.u8(v as u8);
        }
        if let Some(v) = r.birthdate {
            self.date(v);
        }
        if let Some(v) = r.qualification_date {
            self.date(v);
        }
        if let Some(v) = r.reason_of_qualification {
            self.u8(v as u8);
        }
        if let Some(v) = r.disqualification_date {
            self.date(v);
        }
        if let Some(v) = r.reason_of_loss {
            self.u8(v as u8);
        }
        if let Some(v) = r.personal_family {
            self.u8(v as u8);
        }
        if let Some(v) = &r.post_number {
            self.digits(v.as_str());
        }
        if let Some(v) = &r.address {
            self.text(v.expose());
        }
    }

    fn flag_change(&mut self, r: &FlagChange) {
        self.varint(r.seq);
        self.timestamp(r.effective_time);
        self.u8(r.flag_type as u8);
        self.u8(r.operation as u8);
        self.u8(r.scope as u8);
        self.digits(r.insurer.as_str());
        self.u8(r.source as u8);
        self.varint(presence(&[
            r.key.is_some(),
            r.info_code.is_some(),
            r.reason.is_some(),
            r.support_measure_end.is_some(),
        ]));
        if let Some(v) = &r.key {
            self.digits(v.as_str());
        }
        if let Some(v) = &r.info_code {
            self.digits(v.as_str());
        }
        if let Some(v) = r.reason {
            self.u8(v as u8);
        }
        if let Some(v) = r.support_measure_end {
            self.date(v);
        }
    }

    fn fukuhon(&mut self, r: &Fukuhon) {
        self.varint(r.seq);
        self.u8(r.operation as u8);
        self.date(r.effective_date);
        self.digits(r.insurer.as_str());
        self.digits(r.key.as_str());
        self.digits(r.info_code.as_str());
        self.varint(presence(&[r.disclosure.is_some()]));
        if let Some(v) = r.disclosure {
            self.u8(v as u8);
        }
        self.varint(r.items.len() as u64);
        for (code, value) in &r.items {
            self.text(code);
            self.text(value);
        }
    }

    fn handoff(&mut self, r: &AgeTransitionHandoff) {
        self.varint(r.seq);
        self.digits(r.source_insurer.as_str());
        self.digits(r.municipality.as_str());
        self.resident(&r.resident);
        self.text(&r.name);
        self.text(&r.name_kana);
        self.u8(r.sex as u8);
        self.date(r.birthdate);
        self.date(r.transition_date);
        self.varint(presence(&[
            r.individual_number.is_some(),
            r.self_info.is_some(),
            r.flag_set_time.is_some(),
            r.non_disclosure,
            r.auto_response,
            r.source_key.is_some(),
        ]));
        if let Some(v) = &r.source_key {
            self.digits(v.as_str());
        }
        if let Some(v) = &r.individual_number {
            self.digits(v.expose());
        }
        if let Some(v) = r.self_info {
            self.u8(v as u8);
        }
        if let Some(v) = r.flag_set_time {
            self.timestamp(v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A decoding failure: what was wrong (a field name or a structural fault, never a value).
type D<T> = Result<T, &'static str>;

/// Decodes one frame body (after the checksum has been verified).
fn decode_body(body: &[u8]) -> D<(u32, Record)> {
    let mut d = Dec { b: body, pos: 0 };
    let tag = u32::try_from(d.varint()?).map_err(|_| "tag out of range")?;
    let rec = match d.u8()? {
        KIND_SUBSCRIBER_CHANGE => Record::SubscriberChange(d.subscriber_change()?),
        KIND_FLAG_CHANGE => Record::FlagChange(d.flag_change()?),
        KIND_FUKUHON => Record::Fukuhon(d.fukuhon()?),
        KIND_HANDOFF => Record::AgeTransitionHandoff(d.handoff()?),
        _ => return Err("unknown record kind"),
    };
    if d.pos != body.len() {
        return Err("bytes after the record");
    }
    Ok((tag, rec))
}

struct Dec<'a> {
    b: &'a [u8],
    pos: usize,
}

/// `N` ASCII digits of `v`, left-padded with zeros; `None` if `v` has more than `N` digits.
fn unpack_digits<const N: usize>(mut v: u64) -> Option<[u8; N]> {
    let mut a = [b'0'; N];
    for slot in a.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    (v == 0).then_some(a)
}

fn ascii(b: &[u8]) -> &str {
    // Only ever called on ASCII digits (and `TM`), so the fallback is unreachable.
    std::str::from_utf8(b).unwrap_or_default()
}

fn code<T: Copy>(all: &[T], i: u8, what: &'static str) -> D<T> {
    all.get(usize::from(i)).copied().ok_or(what)
}

impl<'a> Dec<'a> {
    fn u8(&mut self) -> D<u8> {
        let b = *self.b.get(self.pos).ok_or("record ends early")?;
        self.pos += 1;
        Ok(b)
    }
    fn bytes(&mut self, n: u64) -> D<&'a [u8]> {
        let rest = &self.b[self.pos..];
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= rest.len())
            .ok_or("record ends early")?;
        self.pos += n;
        Ok(&rest[..n])
    }
    fn varint(&mut self) -> D<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let low = u64::from(b & 0x7F);
            if shift == 63 && low > 1 {
                return Err("integer overflows 64 bits");
            }
            v |= low << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("integer overflows 64 bits")
    }
    fn zigzag(&mut self) -> D<i64> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }
    fn text(&mut self, what: &'static str) -> D<String> {
        let n = self.varint()?;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| what)
    }
    fn presence(&mut self, fields: u32) -> D<u64> {
        let bits = self.varint()?;
        if bits >> fields != 0 {
            return Err("unknown optional field");
        }
        Ok(bits)
    }
    /// Reads an optional field if bit `i` of `bits` says it is present.
    fn opt<T>(&mut self, bits: u64, i: u32, read: impl FnOnce(&mut Self) -> D<T>) -> D<Option<T>> {
        if bits >> i & 1 == 1 {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }
    fn date_or(&mut self, what: &'static str) -> D<Date> {
        let days = i32::try_from(self.zigzag()?).map_err(|_| what)?;
        NaiveDate::from_num_days_from_ce_opt(days).map(Date).ok_or(what)
    }
    fn date(&mut self) -> D<Date> {
        self.date_or("date out of range")
    }
    fn timestamp(&mut self) -> D<Timestamp> {
        const WHAT: &str = "timestamp out of range";
        let date = self.date_or(WHAT)?;
        let v = self.varint()?;
        let secs = u32::try_from(v >> 1).map_err(|_| WHAT)?;
        let nanos = if v & 1 == 1 {
            u32::try_from(self.varint()?).map_err(|_| WHAT)?
        } else {
            0
        };
        let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos).ok_or(WHAT)?;
        Ok(Timestamp(date.0.and_time(time)))
    }
    fn digits<const N: usize>(&mut self, what: &'static str) -> D<[u8; N]> {
        unpack_digits(self.varint()?).ok_or(what)
    }
    fn code<T: Copy>(&mut self, all: &[T], what: &'static str) -> D<T> {
        code(all, self.u8()?, what)
    }

    fn insurer(&mut self) -> D<InsurerNumber> {
        const WHAT: &str = "InsurerNumber";
        InsurerNumber::parse(ascii(&self.digits::<8>(WHAT)?)).map_err(|_| WHAT)
    }
    fn key(&mut self) -> D<SubscriberKey> {
        const WHAT: &str = "SubscriberKey";
        SubscriberKey::parse(ascii(&self.digits::<16>(WHAT)?)).map_err(|_| WHAT)
    }
    fn branch(&mut self) -> D<InsuredBranchNumber> {
        const WHAT: &str = "InsuredBranchNumber";
        InsuredBranchNumber::parse(ascii(&self.digits::<2>(WHAT)?)).map_err(|_| WHAT)
    }
    fn individual_number(&mut self) -> D<IndividualNumber> {
        const WHAT: &str = "IndividualNumber";
        IndividualNumber::parse(ascii(&self.digits::<12>(WHAT)?)).map_err(|_| WHAT)
    }
    fn municipality(&mut self) -> D<MunicipalityCode> {
        const WHAT: &str = "MunicipalityCode";
        MunicipalityCode::parse(ascii(&self.digits::<6>(WHAT)?)).map_err(|_| WHAT)
    }
    fn post_number(&mut self) -> D<PostNumber> {
        const WHAT: &str = "PostNumber";
        PostNumber::parse(ascii(&self.digits::<7>(WHAT)?)).map_err(|_| WHAT)
    }
    fn info_code(&mut self) -> D<InfoCode> {
        const WHAT: &str = "InfoCode";
        let digits = self.digits::<14>(WHAT)?;
        let mut s = [0u8; 16];
        s[..2].copy_from_slice(b"TM");
        s[2..].copy_from_slice(&digits);
        InfoCode::parse(ascii(&s)).map_err(|_| WHAT)
    }
    fn resident(&mut self) -> D<ResidentCode> {
        const WHAT: &str = "ResidentCode";
        let v = self.varint()?;
        let len = (v & 0xF) as usize;
        let digits = unpack_digits::<15>(v >> 4).ok_or(WHAT)?;
        if len == 0 || digits[..15 - len].iter().any(|&d| d != b'0') {
            return Err(WHAT);
        }
        ResidentCode::parse(ascii(&digits[15 - len..])).map_err(|_| WHAT)
    }
    fn address(&mut self) -> D<Address> {
        self.text("Address").map(Address::from_spill)
    }

    fn subscriber_change(&mut self) -> D<SubscriberChange> {
        let seq = self.varint()?;
        let change_type = self.code(ChangeType::ALL, "ChangeType")?;
        let effective_date = self.date()?;
        let insurer = self.insurer()?;
        let key = self.key()?;
        let p = self.presence(17)?;
        Ok(SubscriberChange {
            seq,
            change_type,
            effective_date,
            insurer,
            key,
            card_symbol: self.opt(p, 0, |d| d.text("InsuredCardSymbol"))?,
            card_number: self.opt(p, 1, |d| d.text("InsuredIdentificationNumber"))?,
            branch: self.opt(p, 2, Self::branch)?,
            individual_number: self.opt(p, 3, Self::individual_number)?,
            municipality: self.opt(p, 4, Self::municipality)?,
            resident: self.opt(p, 5, Self::resident)?,
            name: self.opt(p, 6, |d| d.text("Name"))?,
            name_kana: self.opt(p, 7, |d| d.text("NameKana"))?,
            sex: self.opt(p, 8, |d| d.code(Sex1::ALL, "Sex1"))?,
            birthdate: self.opt(p, 9, Self::date)?,
            qualification_date: self.opt(p, 10, Self::date)?,
            reason_of_qualification: self
                .opt(p, 11, |d| d.code(ReasonOfQualification::ALL, "ReasonOfQualification"))?,
            disqualification_date: self.opt(p, 12, Self::date)?,
            reason_of_loss: self.opt(p, 13, |d| d.code(ReasonOfLoss::ALL, "ReasonOfLoss"))?,
            personal_family: self.opt(p, 14, |d| {
                d.code(PersonalFamilyClassification::ALL, "PersonalFamilyClassification")
            })?,
            post_number: self.opt(p, 15, Self::post_number)?,
            address: self.opt(p, 16, Self::address)?,
        })
    }

    fn flag_change(&mut self) -> D<FlagChange> {
        let seq = self.varint()?;
        let effective_time = self.timestamp()?;
        let flag_type = self.code(FlagType::ALL, "FlagType")?;
        let operation = self.code(FlagOperation::ALL, "Operation")?;
        let scope = self.code(FlagScope::ALL, "Scope")?;
        let insurer = self.insurer()?;
        let source = self.code(FlagSource::ALL, "Source")?;
        let p = self.presence(4)?;
        Ok(FlagChange {
            seq,
            effective_time,
            flag_type,
            operation,
            scope,
            insurer,
            key: self.opt(p, 0, Self::key)?,
            info_code: self.opt(p, 1, Self::info_code)?,
            reason: self.opt(p, 2, |d| d.code(SelfInfoReason::ALL, "ReasonCode"))?,
            source,
            support_measure_end: self.opt(p, 3, Self::date)?,
        })
    }

    fn fukuhon(&mut self) -> D<Fukuhon> {
        let seq = self.varint()?;
        let operation = self.code(FukuhonOperation::ALL, "Operation")?;
        let effective_date = self.date()?;
        let insurer = self.insurer()?;
        let key = self.key()?;
        let info_code = self.info_code()?;
        let p = self.presence(1)?;
        let disclosure = self.opt(p, 0, |d| {
            d.code(DisclosureClassification::ALL, "DisclosureClassification")
        })?;
        let n = self.varint()?;
        // Each pair takes at least two bytes: a corrupt count cannot reserve much.
        if n > (self.b.len() - self.pos) as u64 / 2 {
            return Err("record ends early");
        }
        let mut items = Vec::with_capacity(n as usize);
        for _ in 0..n {
            items.push((self.text("ItemCode")?, self.text("Value")?));
        }
        Ok(Fukuhon {
            seq,
            operation,
            effective_date,
            insurer,
            key,
            info_code,
            disclosure,
            items,
        })
    }

    fn handoff(&mut self) -> D<AgeTransitionHandoff> {
        let seq = self.varint()?;
        let source_insurer = self.insurer()?;
        let municipality = self.municipality()?;
        let resident = self.resident()?;
        let name = self.text("Name")?;
        let name_kana = self.text("NameKana")?;
        let sex = self.code(Sex1::ALL, "Sex1")?;
        let birthdate = self.date()?;
        let transition_date = self.date()?;
        let p = self.presence(6)?;
        let source_key = self.opt(p, 5, Self::key)?;
        Ok(AgeTransitionHandoff {
            seq,
            source_insurer,
            source_key,
            individual_number: self.opt(p, 0, Self::individual_number)?,
            municipality,
            resident,
            name,
            name_kana,
            sex,
            birthdate,
            transition_date,
            self_info: self.opt(p, 1, |d| d.code(SelfInfoReason::ALL, "SelfInfoProvisionProhibitedFlg"))?,
            non_disclosure: p >> 3 & 1 == 1,
            auto_response: p >> 4 & 1 == 1,
            flag_set_time: self.opt(p, 2, Self::timestamp)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// CRC-32C, table-driven (slicing by 8)

const fn crc_tables() -> [[u32; 256]; 8] {
    const POLY: u32 = 0x82F6_3B78; // Castagnoli, reflected
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut j = 1;
        while j < 8 {
            t[j][i] = (t[j - 1][i] >> 8) ^ t[0][(t[j - 1][i] & 0xFF) as usize];
            j += 1;
        }
        i += 1;
    }
    t
}

static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

fn crc32c(data: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut crc = !0u32;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = t[7][(lo & 0xFF) as usize]
            ^ t[6][(lo >> 8 & 0xFF) as usize]
            ^ t[5][(lo >> 16 & 0xFF) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xFF) as usize]
            ^ t[2][(hi >> 8 & 0xFF) as usize]
            ^ t[1][(hi >> 16 & 0xFF) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u32::from(b)) & 0xFF) as usize];
    }
    !crc
}

#[cfg(test)]
mod tests;
