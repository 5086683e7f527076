//! The run report's own parts: its worklists (title and columns here, rows from the engine),
//! the summary counts of its inputs, and the abort (R4). `migrate` shares them through
//! [`crate::engine::execute`].

use super::{InputStatus, RejectEntry, Report, ReportStatus, SummaryKey, Worklist};
use crate::error::ErrorCode;
use anyhow::Result;
use std::path::Path;

impl Report {
    /// 文字同定: characters the output encoding cannot carry, one row per character:
    /// file_kind, insurer, subscriber_key, field, code_point, action.
    pub fn add_character_identification(&mut self, rows: Vec<Vec<String>>) {
        self.add_worklist(
            "character_identification",
            Worklist {
                title: "文字同定 — characters to identify".into(),
                columns: vec![
                    "file_kind",
                    "insurer",
                    "subscriber_key",
                    "field",
                    "code_point",
                    "action",
                ],
                rows,
            },
        );
    }

    /// R9: 資格確認書 to issue where 自己情報提供不可 was newly set: insurer, subscriber_key,
    /// name, name_kana, reason_code, flag_set_time, action.
    pub fn add_certificate_issuance(&mut self, rows: Vec<Vec<String>>) {
        self.add_worklist(
            "certificate_issuance",
            Worklist {
                title: "資格確認書の交付 — certificate to issue (自己情報提供不可 newly set)".into(),
                columns: vec![
                    "insurer",
                    "subscriber_key",
                    "name",
                    "name_kana",
                    "reason_code",
                    "flag_set_time",
                    "action",
                ],
                rows,
            },
        );
    }

    /// Cases a person must look at: insurer, subscriber_key, candidates, why, critical.
    pub fn add_review(&mut self, rows: Vec<Vec<String>>) {
        self.add_worklist(
            "review",
            Worklist {
                title: "確認 — cases to review (critical first: a protection may be missing)".into(),
                columns: vec!["insurer", "subscriber_key", "candidates", "why", "critical"],
                rows,
            },
        );
    }

    /// R5: new enrollments of persons flagged elsewhere: insurer, subscriber_key, flagged_at,
    /// flags, note.
    pub fn add_flag_confirmation(&mut self, rows: Vec<Vec<String>>) {
        self.add_worklist(
            "flag_confirmation",
            Worklist {
                title: "フラグ設定の確認 — flagged elsewhere (R5)".into(),
                columns: vec!["insurer", "subscriber_key", "flagged_at", "flags", "note"],
                rows,
            },
        );
    }

    /// R9: support measures past their end date (never released automatically): insurer,
    /// subscriber_key, info_code, flag, support_measure_end, action.
    pub fn add_support_measure_expiry(&mut self, rows: Vec<Vec<String>>) {
        self.add_worklist(
            "support_measure_expiry",
            Worklist {
                title: "支援措置期限 — support measures past their end date".into(),
                columns: vec![
                    "insurer",
                    "subscriber_key",
                    "info_code",
                    "flag",
                    "support_measure_end",
                    "action",
                ],
                rows,
            },
        );
    }

    /// The summary's counts of the inputs and rejects: files_applied, files_skipped,
    /// files_rejected, records_rejected.
    pub fn count_inputs(&mut self) {
        let count = |st: InputStatus| self.inputs.iter().filter(|i| i.status == st).count() as u64;
        let (applied, skipped, rejected) = (
            count(InputStatus::Applied),
            count(InputStatus::Skipped),
            count(InputStatus::Rejected),
        );
        let records_rejected = self.rejects.len() as u64;
        let s = &mut self.summary;
        s.set(SummaryKey::FilesApplied, applied);
        s.set(SummaryKey::FilesSkipped, skipped);
        s.set(SummaryKey::FilesRejected, rejected);
        s.set(SummaryKey::RecordsRejected, records_rejected);
    }

    /// Writes the report into `dir`, replacing an earlier report there (a rerun of the same run
    /// id: a dry run, an abort, a refused migration).
    pub fn write_replacing(&mut self, dir: &Path) -> Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        self.write_to(dir)
    }

    /// The run was aborted (R4): status `aborted`, the reason, no outputs, and the reason as a
    /// critical reject.
    pub fn abort(&mut self, reason: &str) -> Result<()> {
        self.status = ReportStatus::Aborted;
        self.abort_reason = Some(reason.to_owned());
        self.outputs.clear();
        self.rejects.push(RejectEntry {
            file: String::new(),
            record_sequence: None,
            line: None,
            byte_offset: None,
            field: Some("ProvisionControl".into()),
            code: ErrorCode::FlagWouldBeCleared.as_str().into(),
            message: reason.to_owned(),
            critical: true,
        })
    }
}
