-- Hash-addressed objects: DataJoint's JSON, paths, dedup, integrity.
\getenv store_dir OAS_REGRESS_STORE
SELECT oas.oas_content_hash('hello'::bytea) AS hash, oas.oas_content_hash(''::bytea) AS empty_hash;

CREATE TABLE hash_rows (id int PRIMARY KEY, payload jsonb);
COMMENT ON COLUMN hash_rows.payload IS ':<hash@local>:payload';
INSERT INTO hash_rows VALUES
    (1, oas.oas_hash_put('hello'::bytea, 'local', 'lab')),
    (2, oas.oas_hash_put('hello'::bytea, 'local', 'lab')),      -- same content: same object
    (3, oas.oas_hash_put(''::bytea, 'local', 'lab')),           -- empty objects are objects too
    (4, oas.oas_hash_put(NULL, 'local', 'lab')),                -- NULL stays NULL
    (5, oas.oas_hash_put('hello'::bytea)),                      -- default store, current schema
    (6, oas.oas_hash_put(decode(repeat('ab', 300000), 'hex'), 'local', 'lab'));
SELECT id, payload FROM hash_rows ORDER BY id;
-- The store holds one file per distinct content and schema, at DataJoint's path.
SELECT pg_ls_dir(:'store_dir' || '/_hash/lab') AS lab_objects ORDER BY 1;
SELECT length(pg_read_binary_file(:'store_dir' || '/_hash/lab/lvauakv4jmvhnolrtwiraf6fsi')) AS bytes;
-- Reading back returns exactly the bytes, after checking size and MD5.
SELECT id, length(oas.oas_hash_get(payload)) AS len, md5(oas.oas_hash_get(payload)) = md5(
    CASE id WHEN 3 THEN ''::bytea WHEN 6 THEN decode(repeat('ab', 300000), 'hex') ELSE 'hello'::bytea END) AS same
FROM hash_rows WHERE payload IS NOT NULL ORDER BY id;
SELECT oas.oas_hash_get(NULL) IS NULL AS null_in_null_out;

-- Subfolding and a custom prefix change the path of new objects only.
SELECT oas.oas_store_create('folded', jsonb_build_object('protocol', 'file', 'location', :'store_dir',
                                                         'subfolding', jsonb_build_array(2, 2), 'hash_prefix', 'objs'));
SELECT oas.oas_hash_put('hello'::bytea, 'folded', 'lab')->>'path' AS folded_path;
SELECT convert_from(oas.oas_hash_get(oas.oas_hash_put('hello'::bytea, 'folded', 'lab')), 'UTF8') AS folded_read;

-- References are validated before any store is touched.
SELECT try($$SELECT oas.oas_hash_get('{"hash": "lvauakv4jmvhnolrtwiraf6fsi", "path": "_hash/../../etc/lvauakv4jmvhnolrtwiraf6fsi", "schema": "lab", "store": "local", "size": 5}')$$);
SELECT try($$SELECT oas.oas_hash_get('{"hash": "nothex", "path": "_hash/lab/nothex", "schema": "lab", "store": "local", "size": 5}')$$);
SELECT try($$SELECT oas.oas_hash_get('{"path": "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi", "store": "local"}')$$);
SELECT try($$SELECT oas.oas_hash_get('{"hash": "lvauakv4jmvhnolrtwiraf6fsi", "path": "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi", "schema": "lab", "store": "gone", "size": 5}')$$);
SELECT try($$SELECT oas.oas_hash_get('{"hash": "lvauakv4jmvhnolrtwiraf6fsi", "path": "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi", "schema": "lab", "store": "local", "size": 4294967296}')$$);
SELECT try($$SELECT oas.oas_hash_put('x'::bytea, 'local', 'a/b')$$);
SELECT try($$SELECT oas.oas_hash_put('x'::bytea, 'nope')$$);

-- A reference whose size disagrees with the object is caught without reading the content twice.
SELECT try(format('SELECT oas.oas_hash_get(%L)', jsonb_set(payload, '{size}', '6')::text)) FROM hash_rows WHERE id = 1;

-- Corrupt the object in place (same size): the MD5 check catches it.
SELECT :'store_dir' || '/_hash/lab/lvauakv4jmvhnolrtwiraf6fsi' AS obj \gset
SELECT try(format('COPY (SELECT 1) TO PROGRAM %L', 'cat >/dev/null; printf HELLO > ' || :'obj')) AS corrupt_it;
SELECT try(format('SELECT oas.oas_hash_get(%L)', payload::text)) FROM hash_rows WHERE id = 1;
-- With oas.verify_reads off only the size is checked.
SET oas.verify_reads = off;
SELECT convert_from(oas.oas_hash_get(payload), 'UTF8') AS unverified FROM hash_rows WHERE id = 1;
RESET oas.verify_reads;
-- Dedup trusts an existing object of the right size (as DataJoint does), so a same-size
-- corruption is only caught on read; a copy of the wrong size is replaced by the next put.
SELECT try(format('COPY (SELECT 1) TO PROGRAM %L', 'cat >/dev/null; printf HEL > ' || :'obj')) AS truncate_it;
SELECT oas.oas_hash_put('hello'::bytea, 'local', 'lab') = payload AS same_ref FROM hash_rows WHERE id = 1;
SELECT convert_from(oas.oas_hash_get(payload), 'UTF8') AS repaired FROM hash_rows WHERE id = 1;
-- A deleted object: a clear error naming store and path.
SELECT try(format('COPY (SELECT 1) TO PROGRAM %L', 'cat >/dev/null; rm ' || :'obj')) AS delete_it;
SELECT try(format('SELECT oas.oas_hash_get(%L)', payload::text)) FROM hash_rows WHERE id = 1;
-- Storing the same bytes again heals every reference to them.
SELECT oas.oas_hash_put('hello'::bytea, 'local', 'lab') IS NOT NULL AS stored_again;
SELECT id, convert_from(oas.oas_hash_get(payload), 'UTF8') AS healed FROM hash_rows WHERE id IN (1, 2) ORDER BY id;

-- The verify probe reports every step.
SELECT step, ok, detail FROM oas.oas_store_verify('local');
DROP TABLE hash_rows;
