-- nhi-linkage ledger, schema version 3 (applied on top of version 2; also how a v2 ledger is
-- upgraded in place): journal v2.
--
-- The journal was the largest table of a full load (every line repeated the run id, the file
-- name and the event's name: about 120 bytes a line, 67 of 198 MB at 200k subscribers). Its lines
-- now point at a `journal_source` (one row per run and input file) and at a `journal_event` code;
-- the view `journal` shows them as before (same columns, same ids), so what read the journal
-- (`SELECT ... FROM journal`) reads it unchanged.
CREATE TABLE journal_event (
    code  INTEGER PRIMARY KEY,
    name  TEXT NOT NULL UNIQUE
);
INSERT INTO journal_event (code, name) VALUES
    (1, 'acquisition'), (2, 'update'), (3, 'loss'), (4, 'cancel'), (5, 'flag_set'),
    (6, 'flag_released'), (7, 'flag_pending'), (8, 'carry'), (9, 'fukuhon'), (10, 'insurer_flag'),
    (11, 'migrate');
-- events a v2 ledger holds that this release does not name (none known) keep their name
INSERT OR IGNORE INTO journal_event (name) SELECT DISTINCT event FROM journal;

-- One row per run and input file that wrote journal lines (file NULL: a line of no file).
CREATE TABLE journal_source (
    id      INTEGER PRIMARY KEY,
    run_id  TEXT NOT NULL,
    file    TEXT
);
CREATE INDEX journal_source_run ON journal_source (run_id, file);
INSERT INTO journal_source (run_id, file)
    SELECT run_id, file FROM journal GROUP BY run_id, file ORDER BY min(id);

CREATE TABLE journal_line (
    id               INTEGER PRIMARY KEY,
    source           INTEGER NOT NULL REFERENCES journal_source (id),
    record_sequence  INTEGER,
    insurer          TEXT,
    subscriber_key   TEXT,
    event            INTEGER NOT NULL REFERENCES journal_event (code),
    detail           TEXT NOT NULL
);
INSERT INTO journal_line (id, source, record_sequence, insurer, subscriber_key, event, detail)
    SELECT j.id, s.id, j.record_sequence, j.insurer, j.subscriber_key, e.code, j.detail
    FROM journal j
    JOIN journal_source s ON s.run_id = j.run_id AND s.file IS j.file
    JOIN journal_event e ON e.name = j.event
    ORDER BY j.id;
DROP TABLE journal;

CREATE VIEW journal (id, run_id, file, record_sequence, insurer, subscriber_key, event, detail) AS
    SELECT l.id, s.run_id, s.file, l.record_sequence, l.insurer, l.subscriber_key, e.name, l.detail
    FROM journal_line l
    JOIN journal_source s ON s.id = l.source
    JOIN journal_event e ON e.code = l.event;
