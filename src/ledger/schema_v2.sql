-- nhi-linkage ledger, schema version 2 (applied on top of version 1; also how a v1 ledger is
-- upgraded in place).
--
-- enrollment.unsent: the ledger holds a state of this subscriber that the server has not been
-- sent yet (withheld, refused for an unmappable character): every later run writes it (R14).
-- enrollment.published keeps its v1 meaning: the server holds a registration (ProcessingCode 11
-- vs 12), and a refused or withheld group never changes it.
ALTER TABLE enrollment ADD COLUMN unsent INTEGER NOT NULL DEFAULT 0;
CREATE INDEX enrollment_unsent ON enrollment (insurer, subscriber_key) WHERE unsent = 1;

-- R1: pending flag events apply in R1 order across runs; file_key is the file's R1 position
-- (CreationTime, SenderInsurerNumber, FileSequence) as a sortable string. '' for rows of v1.
ALTER TABLE pending_flag ADD COLUMN file_key TEXT NOT NULL DEFAULT '';

-- R1a / R2: the latest release of each flag, with its EffectiveTime, so that a stale release
-- can be recognised and FlagLinkage can date a release with the release's own time. A row here
-- and a row in `flag` for the same key never coexist.
CREATE TABLE flag_released (
    insurer         TEXT NOT NULL,
    subscriber_key  TEXT NOT NULL,
    info_code       TEXT NOT NULL,
    flag_type       TEXT NOT NULL,
    effective_time  TEXT NOT NULL,
    origin          TEXT NOT NULL,
    PRIMARY KEY (insurer, subscriber_key, info_code, flag_type)
) WITHOUT ROWID;

-- A second, independent record of each subscriber's flags: the canonical list
-- `info_code|flag_type|reason_code` of its `flag` rows, sorted, joined by ';' ('' = none). The
-- engine writes it with the enrollment row (another B-tree page than the flag rows); R4 and
-- `ledger check` compare the two, so a corrupted flag row is found before anything is published.
ALTER TABLE enrollment ADD COLUMN flag_digest TEXT NOT NULL DEFAULT '';
UPDATE enrollment SET flag_digest = coalesce((
    SELECT group_concat(f.info_code || '|' || f.flag_type || '|' || coalesce(f.reason_code, ''), ';'
                        ORDER BY f.info_code, f.flag_type)
    FROM flag f WHERE f.insurer = enrollment.insurer AND f.subscriber_key = enrollment.subscriber_key), '');

-- Run ids are chained to the ledger's previous run (issue 13): seq orders the runs of a ledger.
ALTER TABLE run ADD COLUMN seq INTEGER;
