//! Writing a run's linkage from the ledger into its outbox staging folder: per insurer,
//! SubscriberLinkage groups re-read from the ledger (R2, [`super::group`]) and checked against
//! R4 ([`super::invariant`]) one by one, FlagLinkage (insurer-wide and InfoCode flags changed),
//! FukuhonLinkage; then MANIFEST.json. Everything streams: a page of subscribers at a time.

use super::batch::BatchOutcome;
use super::failpoint::failpoint;
use super::group::{Derived, group_for};
use super::invariant::{FlagWouldBeCleared, verify_group};
use crate::domain::{Date, FileKind, InsurerNumber, SubscriberKey, Timestamp};
use crate::formats::linkage::{FlagRow, FukuhonRow, LinkageLayout, ProvisionControl, Written, linkage_header};
use crate::formats::writer::UnmappableChar;
use crate::formats::{FileHeader, Format, TextEncoding};
use crate::ledger::scratch;
use crate::publish::{sync_dir, write_linkage_file};
use crate::report::{OutputEntry, write_private};
use anyhow::Result;
use rusqlite::Connection;
use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use tracing_indicatif::span_ext::IndicatifSpanExt;

/// The files written, and the records written with (or refused for) characters the output
/// encoding cannot represent.
#[derive(Default)]
pub(crate) struct WrittenSet {
    pub(crate) entries: Vec<OutputEntry>,
    pub(crate) unmappable: Vec<UnmappableRecord>,
}

/// A record written with (or refused for) characters the output encoding cannot represent.
pub(crate) struct UnmappableRecord {
    /// The linkage file kind's name.
    pub(crate) kind: String,
    pub(crate) insurer: InsurerNumber,
    pub(crate) key: Option<SubscriberKey>,
    pub(crate) chars: Vec<UnmappableChar>,
    /// Refused (E_UNMAPPABLE_CHAR) rather than written with replacements.
    pub(crate) refused: bool,
}

impl WrittenSet {
    /// Records one written file: its MANIFEST entry and its unmappable characters.
    fn note(&mut self, kind: FileKind, name: String, w: Written, bytes: u64, sha: String) {
        for (i, k, chars) in w.refused {
            self.unmappable.push(UnmappableRecord {
                kind: kind.name().to_owned(),
                insurer: i,
                key: k,
                chars,
                refused: true,
            });
        }
        for (i, k, chars) in w.replaced {
            self.unmappable.push(UnmappableRecord {
                kind: kind.name().to_owned(),
                insurer: i,
                key: k,
                chars,
                refused: false,
            });
        }
        self.entries.push(OutputEntry {
            name,
            kind: kind.name().to_owned(),
            records: w.records,
            bytes,
            sha256: sha,
        });
    }
}

#[derive(serde::Serialize)]
struct Manifest<'a> {
    run_id: &'a str,
    files: &'a [OutputEntry],
}

/// Touched subscribers of one insurer in key order, a page at a time.
struct TouchedPager<'c> {
    conn: &'c Connection,
    insurer: InsurerNumber,
    last: Option<SubscriberKey>,
    page: VecDeque<(SubscriberKey, scratch::Before)>,
    done: bool,
}

impl TouchedPager<'_> {
    fn next(&mut self) -> Result<Option<(SubscriberKey, scratch::Before)>> {
        if self.page.is_empty() && !self.done {
            let page = scratch::touched_page(self.conn, self.insurer, self.last, 1024)?;
            self.done = page.len() < 1024;
            self.last = page.last().map(|p| p.0);
            self.page.extend(page);
        }
        Ok(self.page.pop_front())
    }
}

/// Test hooks: a writer bug that would state 0 for a set flag (once), or drop every carried
/// flag (`NHI_FAILPOINT=writer-clear-flag`, `writer-drop-carry`), for the R4 tests.
struct WriterFaults {
    clear_one: bool,
    drop_carry: bool,
}

impl WriterFaults {
    fn from_env() -> WriterFaults {
        WriterFaults {
            clear_one: failpoint("writer-clear-flag"),
            drop_carry: failpoint("writer-drop-carry"),
        }
    }

    fn inject(&mut self, control: &mut ProvisionControl, kouki: bool) {
        if self.clear_one && (control.self_info.is_some() || control.non_disclosure) {
            self.clear_one = false;
            *control = ProvisionControl {
                self_info: None,
                non_disclosure: false,
                auto_response: control.auto_response,
            };
        }
        if self.drop_carry && kouki {
            *control = ProvisionControl {
                self_info: None,
                non_disclosure: false,
                auto_response: false,
            };
        }
    }
}

/// Everything writing one run's linkage needs, gathered once.
pub(crate) struct LinkageWriter<'a> {
    /// The run's transaction (the ledger as the batch left it).
    pub(crate) conn: &'a Connection,
    pub(crate) layout: &'a dyn LinkageLayout,
    /// The outbox staging folder.
    pub(crate) dir: &'a Path,
    pub(crate) run_id: &'a str,
    /// CreationTime written in the headers.
    pub(crate) creation: Timestamp,
    pub(crate) format: Format,
    pub(crate) encoding: TextEncoding,
    pub(crate) as_of: Date,
    /// The progress bar, advanced once per touched subscriber.
    pub(crate) bar: &'a tracing::Span,
}

/// What one insurer's SubscriberLinkage pass met: the writing stops at the first of these.
enum Stop {
    Fatal(anyhow::Error),
    Violation(FlagWouldBeCleared),
}

impl LinkageWriter<'_> {
    /// Streams the run's linkage files into the staging folder, then MANIFEST.json. An R4
    /// violation stops the writing and is returned as the inner `Err` (the caller aborts; the
    /// staging goes with it).
    pub(crate) fn write(&self, o: &BatchOutcome) -> Result<Result<(WrittenSet, Derived), FlagWouldBeCleared>> {
        let mut set = WrittenSet::default();
        let mut derived = Derived::default();
        let mut insurers: BTreeSet<InsurerNumber> = scratch::insurers(self.conn)?.into_iter().collect();
        insurers.extend(o.flag_rows.iter().map(|r| r.insurer));
        let mut faults = WriterFaults::from_env();
        for ins in insurers {
            let mut info_rows: Vec<FlagRow> = Vec::new();
            if let Err(v) = self.subscriber_file(ins, &mut set, &mut derived, &mut info_rows, &mut faults)? {
                return Ok(Err(v));
            }
            self.flag_file(ins, o, info_rows, &mut set)?;
            self.fukuhon_file(ins, &mut set)?;
        }
        let mut m = serde_json::to_vec_pretty(&Manifest {
            run_id: self.run_id,
            files: &set.entries,
        })?;
        m.push(b'\n');
        write_private(&self.dir.join("MANIFEST.json"), &m)?;
        sync_dir(self.dir);
        Ok(Ok((set, derived)))
    }

    fn file_name(&self, kind: FileKind, ins: InsurerNumber) -> String {
        format!("{}_{}_{}.{}", kind.name(), ins, self.run_id, self.format.extension())
    }

    fn header(&self, kind: FileKind, ins: InsurerNumber) -> FileHeader {
        linkage_header(
            kind,
            format!("{}-{}", kind.name(), self.run_id),
            ins,
            self.creation,
            self.format,
            self.encoding,
        )
    }

    /// SubscriberLinkage of one insurer, streamed: each touched subscriber's group, checked
    /// against R4 just before it is written. No file when no group is written.
    fn subscriber_file(
        &self,
        ins: InsurerNumber,
        set: &mut WrittenSet,
        derived: &mut Derived,
        info_rows: &mut Vec<FlagRow>,
        faults: &mut WriterFaults,
    ) -> Result<Result<(), FlagWouldBeCleared>> {
        let mut stop: Option<Stop> = None;
        let mut yielded = 0u64;
        let name = self.file_name(FileKind::SubscriberLinkage, ins);
        let path = self.dir.join(&name);
        let (w, bytes, sha) = {
            let mut pager = TouchedPager {
                conn: self.conn,
                insurer: ins,
                last: None,
                page: Default::default(),
                done: false,
            };
            let mut groups = std::iter::from_fn(|| {
                while stop.is_none() {
                    let (key, before) = match pager.next() {
                        Ok(Some(x)) => x,
                        Ok(None) => return None,
                        Err(e) => {
                            stop = Some(Stop::Fatal(e));
                            return None;
                        }
                    };
                    self.bar.pb_inc(1);
                    let mut g = match group_for(self.conn, ins, key, &before, self.as_of, derived, info_rows) {
                        Ok(Some(g)) => g,
                        Ok(None) => continue,
                        Err(e) => {
                            stop = Some(Stop::Fatal(e));
                            return None;
                        }
                    };
                    faults.inject(&mut g.control, g.insurer.is_kouki());
                    if let Err(v) = verify_group(self.conn, &g, self.as_of) {
                        stop = Some(Stop::Violation(v));
                        return None;
                    }
                    yielded += 1;
                    return Some(g);
                }
                None
            });
            let header = self.header(FileKind::SubscriberLinkage, ins);
            write_linkage_file(&path, |out| self.layout.subscriber_linkage(&header, &mut groups, out))?
        };
        match stop {
            Some(Stop::Fatal(e)) => return Err(e),
            Some(Stop::Violation(v)) => return Ok(Err(v)),
            None => {}
        }
        if yielded == 0 {
            std::fs::remove_file(&path)?;
        } else {
            set.note(FileKind::SubscriberLinkage, name, w, bytes, sha);
        }
        Ok(Ok(()))
    }

    /// FlagLinkage of one insurer: insurer-wide rows, then the subscribers' InfoCode flags, in
    /// key order. No file when there is no row.
    fn flag_file(
        &self,
        ins: InsurerNumber,
        o: &BatchOutcome,
        info_rows: Vec<FlagRow>,
        set: &mut WrittenSet,
    ) -> Result<()> {
        let mut flag_rows = o
            .flag_rows
            .iter()
            .filter(|r| r.insurer == ins)
            .cloned()
            .chain(info_rows)
            .peekable();
        if flag_rows.peek().is_some() {
            let name = self.file_name(FileKind::FlagLinkage, ins);
            let header = self.header(FileKind::FlagLinkage, ins);
            let (w, bytes, sha) = write_linkage_file(&self.dir.join(&name), |out| {
                self.layout.flag_linkage(&header, &mut flag_rows, out)
            })?;
            set.note(FileKind::FlagLinkage, name, w, bytes, sha);
        }
        Ok(())
    }

    /// FukuhonLinkage of one insurer, streamed from the scratch table in (key, InfoCode) order.
    fn fukuhon_file(&self, ins: InsurerNumber, set: &mut WrittenSet) -> Result<()> {
        if scratch::fukuhon_count(self.conn, ins)? == 0 {
            return Ok(());
        }
        let mut fatal: Option<anyhow::Error> = None;
        let mut last = None;
        let mut page = VecDeque::new();
        let mut rows = std::iter::from_fn(|| {
            if page.is_empty() && fatal.is_none() {
                match scratch::fukuhon_page(self.conn, ins, last, 4096) {
                    Ok(p) => {
                        last = p.last().map(|r: &FukuhonRow| (r.key, r.info_code));
                        page.extend(p);
                    }
                    Err(e) => fatal = Some(e),
                }
            }
            page.pop_front()
        });
        let name = self.file_name(FileKind::FukuhonLinkage, ins);
        let header = self.header(FileKind::FukuhonLinkage, ins);
        let (w, bytes, sha) = write_linkage_file(&self.dir.join(&name), |out| {
            self.layout.fukuhon_linkage(&header, &mut rows, out)
        })?;
        if let Some(e) = fatal {
            return Err(e);
        }
        set.note(FileKind::FukuhonLinkage, name, w, bytes, sha);
        Ok(())
    }
}
