-- Tracked columns, oas_verify and usage.
\getenv store_dir OAS_REGRESS_STORE
SELECT oas.oas_store_create('track', jsonb_build_object('protocol', 'file', 'location', :'store_dir'));
CREATE SCHEMA lab;
-- As DataJoint declares a table: CREATE TABLE, then COMMENT ON COLUMN with codec markers.
CREATE TABLE lab.recording (subject int, session text, trace jsonb, image jsonb, note text, n int,
                            PRIMARY KEY (subject, session));
COMMENT ON COLUMN lab.recording.trace IS ':<hash@track>:raw trace';
COMMENT ON COLUMN lab.recording.image IS ':<object@>:';
COMMENT ON COLUMN lab.recording.note IS ':varchar(64):in-table';
COMMENT ON COLUMN lab.recording.n IS ':int32:';
CREATE TABLE lab.nokey (payload jsonb);
-- Declaring from SQL writes the same comment; a plain user comment is kept.
COMMENT ON COLUMN lab.nokey.payload IS 'what it is';
SELECT oas.oas_declare_column('lab.nokey', 'payload', 'hash@track');
SELECT col_description('lab.nokey'::regclass, 1);
SELECT oas.oas_declare_column('lab.nokey', 'payload', '<attach@track>');
SELECT oas.oas_declare_column('lab.nokey', 'payload', 'hash@track', 'new words');
SELECT try($$SELECT oas.oas_declare_column('lab.recording', 'note', 'blob@track')$$);
SELECT try($$SELECT oas.oas_declare_column('lab.recording', 'nope', 'blob@track')$$);
SELECT try($$SELECT oas.oas_declare_column('lab.nosuchtable', 'x', 'blob@track')$$);
SELECT try($$SELECT oas.oas_declare_column('lab.recording', 'trace', 'blob')$$);
SELECT schema_name, table_name, column_name, codec, store, resolved_store, addressing, user_comment
FROM oas.tracked_columns WHERE schema_name = 'lab' ORDER BY 1, 2, 3;

INSERT INTO lab.recording (subject, session, trace) VALUES
    (1, 'a', oas.oas_hash_put('trace one'::bytea, 'track', 'lab')),
    (1, 'b', oas.oas_hash_put('trace one'::bytea, 'track', 'lab')),
    (2, 'a', oas.oas_hash_put('trace two'::bytea, 'track', 'lab')),
    (3, 'a', NULL);
INSERT INTO lab.nokey VALUES (oas.oas_hash_put('three'::bytea, 'track', 'lab'));
SELECT * FROM oas.usage WHERE schema_name = 'lab' ORDER BY table_name, column_name;
SELECT * FROM oas.oas_verify(only_store => 'track');

-- Break things: a missing object, a same-size corruption, a truncation, a reference to an
-- unknown store, and JSON that is not a reference.
SELECT (trace->>'path') AS one FROM lab.recording WHERE subject = 1 AND session = 'a' \gset
SELECT (trace->>'path') AS two FROM lab.recording WHERE subject = 2 \gset
SELECT (payload->>'path') AS three FROM lab.nokey \gset
SELECT try(format('COPY (SELECT 1) TO PROGRAM %L', 'cat >/dev/null; rm ' || :'store_dir' || '/' || :'one')) AS delete_one;
SELECT try(format('COPY (SELECT 1) TO PROGRAM %L', 'cat >/dev/null; printf TRACE_TWO > ' || :'store_dir' || '/' || :'two')) AS corrupt_two;
SELECT try(format('COPY (SELECT 1) TO PROGRAM %L', 'cat >/dev/null; printf thr > ' || :'store_dir' || '/' || :'three')) AS truncate_three;
INSERT INTO lab.recording (subject, session, trace) VALUES
    (4, 'a', '{"hash": "lvauakv4jmvhnolrtwiraf6fsi", "path": "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi", "schema": "lab", "store": "elsewhere", "size": 5}'),
    (5, 'a', '{"not": "a reference"}');
SELECT table_name, column_name, row_key, store, path IS NOT NULL AS has_path, problem
FROM oas.oas_verify(only_store => NULL) WHERE schema_name = 'lab' ORDER BY table_name, row_key::text;
-- Without content checks only existence and size are looked at.
SELECT table_name, row_key, problem FROM oas.oas_verify(check_content => false) WHERE schema_name = 'lab'
ORDER BY table_name, row_key::text;

-- A role that may not read a table: it is skipped, not an error.
CREATE ROLE oas_regress_reader;
GRANT USAGE ON SCHEMA lab TO oas_regress_reader;
GRANT SELECT ON lab.nokey TO oas_regress_reader;
SET ROLE oas_regress_reader;
SELECT table_name, problem FROM oas.oas_verify() WHERE schema_name = 'lab';
SELECT table_name, refs FROM oas.usage WHERE schema_name = 'lab';
RESET ROLE;
DROP OWNED BY oas_regress_reader;
DROP ROLE oas_regress_reader;
-- A store rows still reference cannot be dropped by accident.
SELECT * FROM oas.oas_store_references('track');
SELECT try($$SELECT oas.oas_store_drop('track')$$);
DROP SCHEMA lab CASCADE;
SELECT count(*) AS tracked_after_drop FROM oas.tracked_columns WHERE schema_name = 'lab';
SELECT oas.oas_store_drop('track');
