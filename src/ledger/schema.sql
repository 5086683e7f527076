-- nhi-linkage ledger, schema version 1.
-- One row per enrollment (insurer, 被保険者枝番); qualification periods, flags with provenance,
-- pending flags (R7), pending hand-offs (R3/R8), 副本, applied files (R10), runs and a journal.

CREATE TABLE enrollment (
    insurer            TEXT NOT NULL,
    subscriber_key     TEXT NOT NULL,
    individual_number  TEXT,
    municipality       TEXT,
    resident_code      TEXT,
    name               TEXT NOT NULL,
    name_kana          TEXT NOT NULL,
    sex                TEXT NOT NULL,
    birthdate          TEXT NOT NULL,
    post_number        TEXT,
    address            TEXT,
    status             TEXT NOT NULL CHECK (status IN ('active', 'lost', 'cancelled')),
    published          INTEGER NOT NULL,
    PRIMARY KEY (insurer, subscriber_key)
) WITHOUT ROWID;
CREATE INDEX enrollment_individual_number ON enrollment (individual_number) WHERE individual_number IS NOT NULL;
CREATE INDEX enrollment_resident ON enrollment (municipality, resident_code, birthdate);

CREATE TABLE period (
    insurer                  TEXT NOT NULL,
    subscriber_key           TEXT NOT NULL,
    ordinal                  INTEGER NOT NULL,
    card_symbol              TEXT,
    card_number              TEXT NOT NULL,
    branch                   TEXT NOT NULL,
    qualification_date       TEXT NOT NULL,
    reason_of_qualification  TEXT NOT NULL,
    disqualification_date    TEXT,
    reason_of_loss           TEXT,
    personal_family          TEXT NOT NULL,
    PRIMARY KEY (insurer, subscriber_key, ordinal)
) WITHOUT ROWID;

-- A row means the flag is set. subscriber_key '' = all subscribers of the insurer (Scope 2);
-- info_code '' = the whole subscriber.
CREATE TABLE flag (
    insurer              TEXT NOT NULL,
    subscriber_key       TEXT NOT NULL,
    info_code            TEXT NOT NULL,
    flag_type            TEXT NOT NULL,
    reason_code          TEXT,
    source               TEXT NOT NULL,
    effective_time       TEXT NOT NULL,
    support_measure_end  TEXT,
    origin               TEXT NOT NULL,
    PRIMARY KEY (insurer, subscriber_key, info_code, flag_type)
) WITHOUT ROWID;

-- R7: flag changes for a subscriber the ledger does not hold yet. Never dropped.
CREATE TABLE pending_flag (
    id                   INTEGER PRIMARY KEY,
    insurer              TEXT NOT NULL,
    subscriber_key       TEXT NOT NULL,
    info_code            TEXT NOT NULL,
    flag_type            TEXT NOT NULL,
    operation            TEXT NOT NULL,
    reason_code          TEXT,
    source               TEXT NOT NULL,
    effective_time       TEXT NOT NULL,
    support_measure_end  TEXT,
    file                 TEXT NOT NULL,
    record_sequence      INTEGER NOT NULL,
    file_order           INTEGER NOT NULL,
    run_id               TEXT NOT NULL
);
CREATE INDEX pending_flag_subscriber ON pending_flag (insurer, subscriber_key);

-- Age-transition hand-offs from 国保 (年齢到達引継). matched_* empty while pending.
CREATE TABLE handoff (
    source_insurer     TEXT NOT NULL,
    source_key         TEXT NOT NULL,
    individual_number  TEXT,
    municipality       TEXT NOT NULL,
    resident_code      TEXT NOT NULL,
    birthdate          TEXT NOT NULL,
    transition_date    TEXT NOT NULL,
    self_info          TEXT NOT NULL,
    non_disclosure     INTEGER NOT NULL,
    auto_response      INTEGER NOT NULL,
    flag_set_time      TEXT,
    origin             TEXT NOT NULL,
    matched_insurer    TEXT,
    matched_key        TEXT,
    PRIMARY KEY (source_insurer, source_key)
) WITHOUT ROWID;
CREATE INDEX handoff_individual_number ON handoff (individual_number) WHERE individual_number IS NOT NULL;
CREATE INDEX handoff_resident ON handoff (municipality, resident_code, birthdate);

CREATE TABLE fukuhon (
    insurer         TEXT NOT NULL,
    subscriber_key  TEXT NOT NULL,
    info_code       TEXT NOT NULL,
    effective_date  TEXT NOT NULL,
    disclosure      TEXT,
    items           TEXT NOT NULL,
    origin          TEXT NOT NULL,
    PRIMARY KEY (insurer, subscriber_key, info_code)
) WITHOUT ROWID;

-- R10: files already applied.
CREATE TABLE applied_file (
    sender           TEXT NOT NULL,
    file_identifier  TEXT NOT NULL,
    sha256           TEXT NOT NULL,
    kind             TEXT NOT NULL,
    name             TEXT NOT NULL,
    run_id           TEXT NOT NULL,
    records          INTEGER NOT NULL,
    rejected         INTEGER NOT NULL,
    PRIMARY KEY (sender, file_identifier)
) WITHOUT ROWID;

-- R12: a run is 'committed' with its staged outputs, then 'published' once they are renamed.
CREATE TABLE run (
    run_id          TEXT PRIMARY KEY,
    as_of           TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('committed', 'published')),
    outbox_staging  TEXT,
    outbox_final    TEXT,
    report_staging  TEXT,
    report_final    TEXT
) WITHOUT ROWID;

CREATE TABLE journal (
    id               INTEGER PRIMARY KEY,
    run_id           TEXT NOT NULL,
    file             TEXT,
    record_sequence  INTEGER,
    insurer          TEXT,
    subscriber_key   TEXT,
    event            TEXT NOT NULL,
    detail           TEXT NOT NULL
);
