-- The reference ledger and its triggers; the collector's report on a store of its own.
\getenv store_dir OAS_REGRESS_STORE
SELECT try(format('COPY (SELECT 1) TO PROGRAM %L', 'cat >/dev/null; mkdir -p ' || :'store_dir' || '/books')) AS mkdir;
SELECT oas.oas_store_create('books', jsonb_build_object('protocol', 'file', 'location', :'store_dir' || '/books'));
CREATE SCHEMA ledger;
CREATE TABLE ledger.t (id int PRIMARY KEY, payload jsonb, other jsonb);
-- No trigger until a column carries a codec marker; then one per event, made by the event trigger.
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ledger.t'::regclass;
COMMENT ON COLUMN ledger.t.payload IS ':<hash@books>:';
SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'ledger.t'::regclass ORDER BY 1;

INSERT INTO ledger.t VALUES (1, oas.oas_hash_put('one'::bytea, 'books', 'ledger')),
                            (2, oas.oas_hash_put('one'::bytea, 'books', 'ledger')),
                            (3, oas.oas_hash_put('two'::bytea, 'books', 'ledger')),
                            (4, NULL), (5, 'null');
CREATE VIEW ledger.books AS
SELECT right(path, 26) AS hash, refs FROM oas.ledger WHERE store = 'books' ORDER BY 1;
SELECT * FROM ledger.books;
-- An UPDATE records the net change per object; one that changes nothing records nothing.
UPDATE ledger.t SET payload = (SELECT payload FROM ledger.t WHERE id = 3) WHERE id = 2;
UPDATE ledger.t SET id = id + 10;
SELECT op, right(path, 26) AS hash, delta FROM oas.ref_log WHERE store = 'books' ORDER BY id;
-- A rolled-back statement leaves no trace.
BEGIN;
DELETE FROM ledger.t;
SELECT count(*) FROM ledger.books;
ROLLBACK;
SELECT * FROM ledger.books;
-- A second tracked column: its existing references are recorded when it becomes tracked.
UPDATE ledger.t SET other = payload;
SELECT oas.oas_declare_column('ledger.t', 'other', 'hash@books');
SELECT column_name, sum(refs) FROM oas.ledger WHERE store = 'books' GROUP BY 1 ORDER BY 1;
SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'ledger.t'::regclass AND tgname = 'oas_track_insert';
-- Renaming a column moves its books; dropping it releases them.
ALTER TABLE ledger.t RENAME COLUMN other TO copy;
SELECT column_name, sum(refs) FROM oas.ledger WHERE store = 'books' GROUP BY 1 ORDER BY 1;
ALTER TABLE ledger.t DROP COLUMN copy;
SELECT column_name, sum(refs) FROM oas.ledger WHERE store = 'books' GROUP BY 1 ORDER BY 1;
-- TRUNCATE releases what the table referenced.
TRUNCATE ledger.t;
SELECT count(*) FROM ledger.books;
SELECT op, sum(delta) FROM oas.ref_log WHERE store = 'books' GROUP BY op ORDER BY op;

-- The collector: a dry run reports and records nothing.
SELECT store, dry_run, run_id, referenced, stored, orphaned, waiting, trashed, errors
FROM oas.oas_gc(store => 'books');
SELECT count(*) FROM oas.gc_candidate WHERE store = 'books';
SELECT try($$SELECT * FROM oas.oas_gc(store => 'nosuch')$$);
SELECT try($$SELECT * FROM oas.oas_gc(grace => '-1 day')$$);
SELECT try($$SELECT * FROM oas.oas_gc_restore(424242)$$);
CREATE ROLE gc_nobody;
SET ROLE gc_nobody;
SELECT try($$SELECT * FROM oas.oas_gc()$$);
SELECT try($$INSERT INTO oas.ref_log (op, table_oid, schema_name, table_name, column_name, store, path, delta)
             VALUES ('INSERT', 0, 'x', 'x', 'x', 'books', 'forged', 1)$$);
RESET ROLE;
DROP ROLE gc_nobody;
-- A real run needs READ COMMITTED (its checks need a fresh snapshot per statement), and so do
-- restore and purge (they wait for a running collector and must see what it committed).
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT try($$SELECT * FROM oas.oas_gc(false, store => 'books')$$);
SELECT try($$SELECT * FROM oas.oas_gc_restore(1)$$);
SELECT try($$SELECT * FROM oas.oas_gc_purge()$$);
ROLLBACK;
-- Only jsonb columns hold references: a marker on another type tracks nothing (its values
-- would be converted by user code, and the ledger's triggers run as the extension's owner).
CREATE TABLE ledger.other (id int PRIMARY KEY, payload text);
COMMENT ON COLUMN ledger.other.payload IS ':<hash@books>:';
SELECT count(*) FROM oas.tracked_columns WHERE table_name = 'other';
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ledger.other'::regclass;
-- A value from oas_npy() in a column that would not store it is refused, not silently lost.
CREATE TABLE ledger.h (id int PRIMARY KEY, payload jsonb);
COMMENT ON COLUMN ledger.h.payload IS ':<hash@books>:';
SELECT try($$INSERT INTO ledger.h VALUES (1, oas.oas_npy(ARRAY[1]))$$);
DROP SCHEMA ledger CASCADE;
SELECT count(*) FROM oas.ledger WHERE store = 'books';

-- The stripe of an object (src/api/locks.rs) is hashtext(path) & 1023, whatever the path.
SELECT count(*) AS paths, count(*) FILTER (WHERE oas.lock_stripe(p) = hashtext(p) & 1023) AS same,
       min(oas.lock_stripe(p)) >= 0 AND max(oas.lock_stripe(p)) <= 1023 AS in_range
FROM (SELECT '_hash/lab/' || md5(g::text) AS p FROM generate_series(1, 5000) g
      UNION ALL VALUES (''), ('é/ü/中'), (repeat('x', 10000))) s;
