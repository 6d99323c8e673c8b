-- Writing <npy@> and <object@> values from plain SQL: the row trigger stores each value at the
-- path DataJoint builds from the row's key; pending values, errors; slices as PostgreSQL arrays.
\getenv store_dir OAS_REGRESS_STORE
SELECT try(format('COPY (SELECT 1) TO PROGRAM %L', 'cat >/dev/null; mkdir -p ' || :'store_dir' || '/writes')) AS mkdir;
SELECT oas.oas_store_create('writes', jsonb_build_object('protocol', 'file', 'location', :'store_dir' || '/writes'));
CREATE SCHEMA w;
CREATE TABLE w.scan (subject int, taken timestamp, traces jsonb, movie jsonb, note text,
                     PRIMARY KEY (subject, taken));
COMMENT ON COLUMN w.scan.traces IS ':<npy@writes>:';
COMMENT ON COLUMN w.scan.movie IS ':<object@writes>:';
SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'w.scan'::regclass AND tgname = 'oas_fill_values';

-- A pending value says what it is; it is not a reference yet.
SELECT p - 'oas_pending' AS pending FROM oas.oas_npy(ARRAY[[1, 2, 3], [4, 5, 6]]::int2[]) p;
SELECT p - 'oas_pending' AS pending FROM oas.oas_object('hello'::bytea, 'txt') p;
SELECT p - 'oas_pending' AS pending FROM oas.oas_object_folder(ARRAY['a.bin', 'sub/b.bin'], ARRAY['\x0102'::bytea, '\x03']) p;

INSERT INTO w.scan VALUES
    (1, '2024-01-15 12:30:45', oas.oas_npy(ARRAY[[1, 2, 3], [4, 5, 6]]::int2[]), oas.oas_object('hello'::bytea, 'txt'), 'a'),
    (2, '2024-01-15 12:30:45', oas.oas_npy(ARRAY[1.5, 2.5]::float8[]), NULL, 'b');
INSERT INTO w.scan VALUES
    (3, '2024-02-01 00:00:00', oas.oas_npy(oas.oas_npy_from_array(ARRAY[true, false])),
     oas.oas_object_folder(ARRAY['a.bin', 'sub/b.bin'], ARRAY['\x0102'::bytea, '\x03']), 'c');
-- Paths are DataJoint's, but for the random token.
SELECT subject,
       regexp_replace(traces->>'path', '_[A-Za-z0-9_-]{8}\.npy$', '_TOKEN.npy') AS traces_path,
       traces - 'path' AS traces,
       regexp_replace(movie->>'path', '_[A-Za-z0-9_-]{8}', '_TOKEN') AS movie_path,
       movie - 'path' - 'timestamp' AS movie
FROM w.scan ORDER BY subject;
SELECT oas.oas_npy_slice_array(traces) FROM w.scan ORDER BY subject;
SELECT oas.oas_npy_slice_array(traces, ':, 1') FROM w.scan WHERE subject = 1;
SELECT oas.oas_npy_slice_array(traces, '1, 2') FROM w.scan WHERE subject = 1;
SELECT convert_from(oas.oas_read(movie, 0, 100), 'UTF8') FROM w.scan WHERE subject = 1;
SELECT path, size FROM w.scan, oas.oas_object_list(movie) WHERE subject = 3;
SELECT regexp_replace(path, '_[A-Za-z0-9_-]{8}', '_TOKEN'), size FROM w.scan, oas.oas_object_list(movie) WHERE subject = 1;
SELECT count(*) AS broken FROM oas.oas_verify(only_store => 'writes');
-- The ledger holds the references, not the pending values.
SELECT count(*), count(*) FILTER (WHERE path LIKE '_schema/w/scan/%') FROM oas.ledger WHERE store = 'writes';

-- UPDATE gives a new token path.
CREATE TEMP TABLE before AS SELECT traces->>'path' AS p FROM w.scan WHERE subject = 2;
UPDATE w.scan SET traces = oas.oas_npy(ARRAY[9.0]::float8[]) WHERE subject = 2;
SELECT traces->>'path' <> (SELECT p FROM before) AS new_path, traces->'shape' FROM w.scan WHERE subject = 2;
-- Rows that write no pending value are untouched by the trigger.
UPDATE w.scan SET note = 'z' WHERE subject = 1;
SELECT count(*) FROM w.scan WHERE note = 'z' AND traces ? 'dtype';

-- Errors: the wrong kind of value for a column, pending values used twice or elsewhere,
-- bad .npy bytes, bad folders and extensions.
SELECT try($$INSERT INTO w.scan VALUES (9, now(), oas.oas_object('x'::bytea), NULL)$$);
SELECT try($$INSERT INTO w.scan VALUES (9, now(), oas.oas_npy(ARRAY[1]), oas.oas_npy(ARRAY[1]))$$);
SELECT try($$INSERT INTO w.scan VALUES (9, now(), '{"oas_pending": "v-1-1", "kind": "npy"}', NULL)$$);
SELECT try($$SELECT oas.oas_npy('not npy'::bytea)$$);
SELECT try($$SELECT oas.oas_npy(ARRAY['a', 'b'])$$);
SELECT try($$SELECT oas.oas_object_folder(ARRAY['a', 'a'], ARRAY['\x01'::bytea, '\x02'])$$);
SELECT try($$SELECT oas.oas_object_folder(ARRAY['../a'], ARRAY['\x01'::bytea])$$);
SELECT try($$SELECT oas.oas_object_folder(ARRAY['a', 'b'], ARRAY['\x01'::bytea])$$);
SELECT try($$SELECT oas.oas_object('x'::bytea, 'a/b')$$);
SELECT regexp_replace(try($$SELECT oas.oas_npy_slice_array(movie) FROM w.scan WHERE subject = 1$$), '_[A-Za-z0-9_-]{8}', '_TOKEN');
SELECT try($$SELECT oas.oas_upload_part('nope', '\x00')$$);
SELECT try($$SELECT oas.oas_upload_begin('w.scan', 'note', '{"subject": 1, "taken": "2024-01-01"}')$$);
SELECT count(*) FROM w.scan;

-- An upload in parts, straight to its final path.
SELECT oas.oas_upload_begin('w.scan', 'movie', '{"subject": 5, "taken": "2024-03-01 10:00:00"}', 'bin') AS upload \gset
SELECT oas.oas_upload_part(:'upload', 'abc'::bytea), oas.oas_upload_part(:'upload', 'def'::bytea);
INSERT INTO w.scan (subject, taken, movie) VALUES (5, '2024-03-01 10:00:00', oas.oas_upload_finish(:'upload'));
SELECT regexp_replace(movie->>'path', '_[A-Za-z0-9_-]{8}', '_TOKEN') AS path, movie->'size' AS size,
       convert_from(oas.oas_read(movie, 0, 10), 'UTF8') FROM w.scan WHERE subject = 5;
SELECT regexp_replace(try(format('SELECT oas.oas_upload_part(%L, %L)', :'upload', 'x')), 'u-[0-9]+-[A-Za-z0-9_-]+', 'ID');
DROP SCHEMA w CASCADE;
