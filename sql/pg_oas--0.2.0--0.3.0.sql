-- pg_oas 0.2.0 -> 0.3.0 (ALTER EXTENSION pg_oas UPDATE). Tables, views, indexes, grants and
-- event triggers are unchanged; these functions change:
--   * one reading of references and one walk over tracked columns: oas._reference and
--     oas._tracked_refs are new; oas_verify, oas_usage, oas_store_references, the ledger's
--     trigger (_track_refs) and _sync_table use them;
--   * lock classes live in Rust: oas._gc_running() is new, _gc_may_hide asks it;
--     oas.lock_stripe(store, path) becomes oas.lock_stripe(path) (it ignored the store), made
--     from Rust, where the collector computes the same stripes without asking SQL;
--   * oas_npy_slice_array is built in Rust (no text literal in between); _npy_slice_array_text goes;
--   * every function gets its COMMENT ON FUNCTION (oas._comment_functions, at the end).
-- Function bodies are those of sql/tracking.sql, sql/collector.sql and sql/ledger.sql at 0.3.0;
-- tests/client/test_upgrade.py checks the result equals a fresh install.

-- Functions made from Rust.
CREATE  FUNCTION "_comment_functions"() RETURNS bigint /* i64 */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'comment_functions_wrapper';
CREATE  FUNCTION "_gc_running"() RETURNS bool /* bool */
STRICT STABLE PARALLEL UNSAFE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'gc_running_wrapper';

DROP FUNCTION oas.oas_npy_slice_array(jsonb, text);
DROP FUNCTION oas._npy_slice_array_text(jsonb, text);
CREATE  FUNCTION "oas_npy_slice_array"(
	"reference" jsonb, /* JsonB */
	"slice" TEXT DEFAULT '' /* & str */
) RETURNS double precision[] /* Float8Array */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_npy_slice_array_wrapper';

-- tracking.sql
-- The store and path of a reference, given its column's store (the codec's store, or the default
-- store): the one home of this rule. A reference that names no store (null or "", as DataJoint
-- writes for its default store) is in its column's store. One row for every value; `path` is NULL
-- where the value is not an object with a path (each caller decides what that means). Inlined into
-- the queries that call it (LANGUAGE sql, IMMUTABLE, no SET: operators are qualified instead).
CREATE FUNCTION oas._reference(ref jsonb, column_store text)
RETURNS TABLE (store text, path text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN ref OPERATOR(pg_catalog.->>) 'store' OPERATOR(pg_catalog.<>) ''
                THEN ref OPERATOR(pg_catalog.->>) 'store' ELSE column_store END,
           ref OPERATOR(pg_catalog.->>) 'path'
$$;

-- Every tracked column (of table `only_table`, or all), once, in order: the one walk over them.
-- `why_not` is NULL where the caller may read the whole table, and otherwise says why not (no
-- SELECT privilege, or row security would filter it for the caller: such a table is skipped,
-- never read in part). `refs` is a query over the column's non-NULL values, with the columns
-- ref (the value as jsonb), store and path (from oas._reference) and row_key (with `keys`, the
-- row's primary key as jsonb, or its ctid; otherwise NULL). Run it with row_security = off.
CREATE FUNCTION oas._tracked_refs(keys boolean DEFAULT false, only_table oid DEFAULT NULL)
RETURNS TABLE (table_oid regclass, schema_name text, table_name text, column_name text,
               codec text, addressing text, resolved_store text, why_not text, refs text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT t.table_oid, t.schema_name, t.table_name, t.column_name, t.codec, t.addressing,
           t.resolved_store,
           CASE WHEN NOT pg_catalog.has_table_privilege(t.table_oid, 'SELECT') THEN 'no SELECT privilege'
                WHEN pg_catalog.row_security_active(t.table_oid) THEN 'row security applies'
           END,
           pg_catalog.format(
               'SELECT %s AS row_key, v.ref, r.store, r.path FROM %s AS oas_t'
               ' CROSS JOIN LATERAL (SELECT oas_t.%I::pg_catalog.jsonb) v(ref)'
               ' CROSS JOIN LATERAL oas._reference(v.ref, %L) r WHERE v.ref IS NOT NULL',
               CASE WHEN keys THEN coalesce(
                   (SELECT 'pg_catalog.jsonb_build_object('
                           || pg_catalog.string_agg(pg_catalog.format('%L, oas_t.%I', a.attname, a.attname), ', '
                                                    ORDER BY pg_catalog.array_position(i.indkey::int2[], a.attnum))
                           || ')'
                    FROM pg_catalog.pg_index i
                    JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
                                                  AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey)
                    WHERE i.indrelid OPERATOR(pg_catalog.=) t.table_oid AND i.indisprimary),
                   'pg_catalog.jsonb_build_object(''ctid'', oas_t.ctid::text)')
               ELSE 'NULL::pg_catalog.jsonb' END,
               t.table_oid, t.column_name, t.resolved_store)
    FROM oas.tracked_columns t
    WHERE only_table IS NULL OR t.table_oid OPERATOR(pg_catalog.=) only_table
    ORDER BY t.schema_name, t.table_name, t.column_name
$fn$;

-- Check every reference in every tracked column the caller may read: the object exists, its
-- size matches, and (check_content) its MD5 matches where the reference records a hash.
-- Returns one row per broken reference, with the row's primary key.
--
-- oas_verify, oas_usage and oas_store_references read other roles' tables, often on behalf of an
-- administrator: they pin search_path and never run a table's row-security policies (a policy is
-- its owner's code, run as the caller). A table whose policies would apply to the caller is
-- skipped, as one the caller may not read is; row_security = off makes a policy an error, never
-- a call, should one slip through.
CREATE OR REPLACE FUNCTION oas.oas_verify(check_content boolean DEFAULT true, only_store text DEFAULT NULL)
RETURNS TABLE (schema_name text, table_name text, column_name text, row_key jsonb,
               store text, path text, problem text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET row_security = off
AS $fn$
#variable_conflict use_column
DECLARE
    col record;
    rec record;
    found_problem text;
    checked bigint := 0;
    broken bigint := 0;
    skipped int := 0;
BEGIN
    FOR col IN SELECT w.* FROM oas._tracked_refs(keys => true) w LOOP
        IF col.why_not = 'no SELECT privilege' THEN
            RAISE NOTICE 'oas_verify: skipping %.%.% (no SELECT privilege on the table)',
                col.schema_name, col.table_name, col.column_name;
            skipped := skipped + 1;
            CONTINUE;
        END IF;
        IF col.why_not IS NOT NULL THEN
            RAISE NOTICE 'oas_verify: skipping %.%.% (row security applies to you; its owner or a role with BYPASSRLS can check it)',
                col.schema_name, col.table_name, col.column_name;
            skipped := skipped + 1;
            CONTINUE;
        END IF;
        FOR rec IN EXECUTE col.refs LOOP
            CONTINUE WHEN only_store IS NOT NULL AND rec.store IS DISTINCT FROM only_store;
            checked := checked + 1;
            found_problem := oas.oas_check_reference(rec.ref, check_content);
            IF found_problem IS NOT NULL THEN
                broken := broken + 1;
                schema_name := col.schema_name;
                table_name := col.table_name;
                column_name := col.column_name;
                row_key := rec.row_key;
                store := rec.store;
                path := rec.path;
                problem := found_problem;
                RETURN NEXT;
            END IF;
            IF checked % 10000 = 0 THEN
                RAISE NOTICE 'oas_verify: % references checked, % broken so far', checked, broken;
            END IF;
        END LOOP;
    END LOOP;
    RAISE NOTICE 'oas_verify: % references checked, % broken%', checked, broken,
        CASE WHEN skipped > 0 THEN format(', %s column(s) skipped', skipped) ELSE '' END;
END
$fn$;
COMMENT ON FUNCTION oas.oas_verify(boolean, text) IS
    'Check every reference in every tracked column the caller may read: the object exists, its size matches and (check_content) its MD5 matches. One row per broken reference, with the row''s primary key.';

-- References, distinct objects and bytes per store, schema, table and column, for BI tools.
-- Bytes count each distinct object of a column once (the size its references record; npy
-- references record none: see unsized_objects). An object shared by two columns counts in both.
CREATE OR REPLACE FUNCTION oas.oas_usage()
RETURNS TABLE (store text, schema_name text, table_name text, column_name text, codec text,
               refs bigint, objects bigint, bytes numeric, unsized_objects bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET row_security = off
AS $fn$
#variable_conflict use_column
DECLARE
    col record;
BEGIN
    FOR col IN SELECT w.* FROM oas._tracked_refs() w WHERE w.why_not IS NULL LOOP
        RETURN QUERY EXECUTE format($q$
            WITH r AS (
                SELECT q.store AS s, q.path AS p,
                       CASE WHEN jsonb_typeof(q.ref->'size') = 'number' THEN (q.ref->>'size')::numeric END AS z
                FROM (%1$s) q),
            o AS (SELECT DISTINCT ON (s, p) s, p, z FROM r)
            SELECT o.s, %2$L::text, %3$L::text, %4$L::text, %5$L::text,
                   (SELECT count(*) FROM r WHERE r.s IS NOT DISTINCT FROM o.s),
                   count(*), coalesce(sum(o.z), 0), count(*) FILTER (WHERE o.z IS NULL)
            FROM o GROUP BY o.s $q$,
            col.refs, col.schema_name, col.table_name, col.column_name, col.codec);
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION oas.oas_usage() IS
    'References, distinct objects and bytes per store, schema, table and column (the view oas.usage); tables the caller may not read are left out.';

-- Rows referencing a store, per tracked column (refs is NULL where the caller may not read the
-- table, or its row security applies to the caller: those references could not be counted). oas_store_drop refuses while any are left.
CREATE OR REPLACE FUNCTION oas.oas_store_references(store_name text)
RETURNS TABLE (schema_name text, table_name text, column_name text, refs bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET row_security = off
AS $fn$
#variable_conflict use_column
DECLARE
    col record;
    n bigint;
BEGIN
    FOR col IN SELECT w.* FROM oas._tracked_refs() w LOOP
        IF col.why_not IS NULL THEN
            EXECUTE format('SELECT count(*) FROM (%s) q WHERE q.store = $1', col.refs)
                INTO n USING store_name;
            CONTINUE WHEN n = 0;
        ELSE
            n := NULL;
        END IF;
        schema_name := col.schema_name;
        table_name := col.table_name;
        column_name := col.column_name;
        refs := n;
        RETURN NEXT;
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION oas.oas_store_references(text) IS
    'Rows referencing a store, per tracked column; refs is NULL where they could not be counted (the caller may not read the table, or its row security applies). oas_store_drop refuses while any are left.';

COMMENT ON FUNCTION oas.oas_encode_pk_value(anyelement) IS
    'A primary-key value as DataJoint renders it in schema-addressed paths (subject_id=42, session_date=2024-01-15, URL-quoted strings).';

-- collector.sql
-- lock_stripe(path) is made from Rust (src/api/locks.rs, the one home of the stripe rule).
CREATE  FUNCTION "lock_stripe"(
	"path" TEXT /* & str */
) RETURNS INT /* i32 */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'lock_stripe_wrapper';

-- May an object a new reference names sit in trash, with no record this transaction can see?
-- Yes while a collector runs (its records are not committed yet), and in transactions that do not
-- see commits made after they started.
CREATE OR REPLACE FUNCTION oas._gc_may_hide() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT oas._gc_running()
        OR (pg_catalog.current_setting('transaction_isolation') <> 'read committed'
            AND EXISTS (SELECT 1 FROM oas.gc_run))
$$;

-- ledger.sql
-- The statement trigger on tracked tables (INSERT, UPDATE, DELETE; transition tables new_refs and
-- old_refs). Arguments: triples of (column, store from the column's codec or '', managed 't'/'f').
-- It records each column's net change per object, then, for every object that gains a
-- reference, takes the object's stripe lock and makes sure a collector has not moved it away.
CREATE OR REPLACE FUNCTION oas._track_refs() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    i int := 0;
    col text;
    col_store text;
    managed boolean;
    default_store text;
    refs_of text;
    diff text;
    got_stores text[];
    got_paths text[];
    add_stores text[] := '{}';
    add_paths text[] := '{}';
    pending boolean;
BEGIN
    SELECT st.name INTO default_store FROM oas.store st WHERE st.is_default;
    WHILE i + 3 <= TG_NARGS LOOP
        col := TG_ARGV[i];
        col_store := coalesce(nullif(TG_ARGV[i + 1], ''), default_store);
        managed := TG_ARGV[i + 2] = 't';
        i := i + 3;
        -- A value from oas_npy()/oas_object() that no row trigger stored (a column that is not
        -- schema-addressed, or triggers bypassed) would lose its bytes: refuse it.
        IF TG_OP <> 'DELETE' THEN
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM new_refs WHERE jsonb_typeof(%1$I) = ''object'' AND %1$I ? ''oas_pending'')', col)
                INTO pending;
            IF pending THEN
                RAISE EXCEPTION 'pg_oas: column "%" of "%.%" received a pending value that was never stored', col, TG_TABLE_SCHEMA, TG_TABLE_NAME
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'oas_npy(), oas_object() and oas_object_folder() values go into <npy@> and <object@> columns, whose row trigger stores them';
            END IF;
        END IF;
        -- (store, path) of each reference in a transition table (oas._reference, inlined).
        refs_of := format($q$SELECT r.store, r.path FROM %%s AS oas_t
                             CROSS JOIN LATERAL oas._reference(oas_t.%I::jsonb, %L) r
                             WHERE r.path IS NOT NULL$q$,
                          col, coalesce(col_store, ''));
        diff := CASE TG_OP
            WHEN 'INSERT' THEN format('SELECT store, path, count(*) AS n FROM (%s) x GROUP BY 1, 2',
                                      format(refs_of, 'new_refs'))
            WHEN 'DELETE' THEN format('SELECT store, path, -count(*) AS n FROM (%s) x GROUP BY 1, 2',
                                      format(refs_of, 'old_refs'))
            ELSE format('SELECT store, path, sum(d) AS n FROM (SELECT store, path, 1 AS d FROM (%s) a
                           UNION ALL SELECT store, path, -1 FROM (%s) b) x GROUP BY 1, 2 HAVING sum(d) <> 0',
                        format(refs_of, 'new_refs'), format(refs_of, 'old_refs'))
        END;
        EXECUTE format($q$WITH d AS (%s),
                          logged AS (INSERT INTO oas.ref_log (op, table_oid, schema_name, table_name,
                                                              column_name, store, path, delta)
                                     SELECT $1, $2, $3, $4, $5, d.store, d.path, d.n FROM d
                                     RETURNING store, path, delta)
                          SELECT coalesce(array_agg(store), '{}'), coalesce(array_agg(path), '{}')
                          FROM logged WHERE delta > 0$q$, diff)
            INTO got_stores, got_paths
            USING TG_OP, TG_RELID, TG_TABLE_SCHEMA::text, TG_TABLE_NAME::text, col;
        IF managed THEN
            add_stores := add_stores || got_stores;
            add_paths := add_paths || got_paths;
        END IF;
    END LOOP;

    IF cardinality(add_paths) > 0 THEN
        -- Stripes in a fixed order; writers only ever take them shared, so no deadlock.
        PERFORM oas._lock_stripes(ARRAY(SELECT DISTINCT oas.lock_stripe(u.p)
                                        FROM unnest(add_paths) u(p) ORDER BY 1));
        IF oas._gc_may_hide() THEN
            PERFORM oas._gc_ensure_present(u.s, u.p)
            FROM (SELECT DISTINCT v.s, v.p FROM unnest(add_stores, add_paths) v(s, p)) u(s, p);
        ELSE
            -- Recorded trash, and candidates (a run that moved objects and then aborted left no
            -- trash record, but the candidates it read were committed before).
            PERFORM oas._gc_ensure_present(t.s, t.p)
            FROM (SELECT g.store AS s, g.ref_path AS p FROM oas.gc_trash g
                  JOIN unnest(add_stores, add_paths) u(s, p) ON g.store = u.s AND g.ref_path = u.p
                  UNION
                  SELECT c.store, c.path FROM oas.gc_candidate c
                  JOIN unnest(add_stores, add_paths) u(s, p) ON c.store = u.s AND c.path = u.p) t;
        END IF;
    END IF;
    RETURN NULL;
END
$fn$;

-- Bring a table's triggers and ledger in line with its tracked columns: (re)create the triggers
-- when the tracked columns changed, record the references of newly tracked columns (ATTACH) and
-- release those of columns no longer tracked (DETACH).
CREATE OR REPLACE FUNCTION oas._sync_table(rel oid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    args text[];
    want bytea;
    -- No backslash in any literal of this body: it must compile the same under any
    -- standard_conforming_strings (a hex bytea literal broke every CREATE TABLE when it was off).
    have bytea;
    fill_args text[];
    fill_want bytea;
    fill_have bytea;
    tbl text;
    sch text;
    relname text;
    c record;
BEGIN
    SELECT n.nspname, cl.relname, cl.oid::regclass::text INTO sch, relname, tbl
    FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace
    WHERE cl.oid = rel AND cl.relkind IN ('r', 'p');
    IF tbl IS NULL OR sch IN ('oas', 'pg_catalog', 'information_schema') THEN
        RETURN;
    END IF;

    -- Release columns the ledger has references for that are no longer tracked.
    PERFORM oas._release('DETACH', rel, keep_columns => ARRAY(
        SELECT t.column_name::text FROM oas.tracked_columns t WHERE t.table_oid = rel));

    -- Record the references of tracked columns the ledger knows nothing of.
    FOR c IN SELECT w.column_name, w.refs FROM oas._tracked_refs(only_table => rel) w
             WHERE NOT EXISTS (SELECT 1 FROM oas.ref_log l WHERE l.table_oid = rel
                               AND l.column_name = w.column_name
                               GROUP BY l.store, l.path HAVING sum(l.delta) <> 0) LOOP
        EXECUTE format($q$INSERT INTO oas.ref_log (op, table_oid, schema_name, table_name, column_name, store, path, delta)
                          SELECT 'ATTACH', $1, $2, $3, $4, coalesce(q.store, ''), q.path, count(*)
                          FROM (%s) q WHERE q.path IS NOT NULL
                          GROUP BY 6, 7$q$, c.refs)
            USING rel, sch, relname, c.column_name;
    END LOOP;

    SELECT coalesce(array_agg(v.x ORDER BY cols.column_name, v.ord), '{}') INTO args
    FROM (SELECT t.column_name, coalesce(t.store, '') AS st,
                 CASE WHEN t.addressing = 'filepath' THEN 'f' ELSE 't' END AS m
          FROM oas.tracked_columns t WHERE t.table_oid = rel) cols,
         LATERAL (VALUES (1, cols.column_name), (2, cols.st), (3, cols.m)) v(ord, x);
    SELECT coalesce(string_agg(convert_to(a, 'UTF8') || pg_catalog.decode('00', 'hex'), ''::bytea ORDER BY n), ''::bytea)
      INTO want FROM unnest(args) WITH ORDINALITY u(a, n);
    -- Schema-addressed columns (<npy@>, <object@>) also get the row trigger that stores values
    -- written with oas_npy()/oas_object() at the row's key-based path.
    SELECT coalesce(array_agg(t.column_name ORDER BY t.column_name), '{}') INTO fill_args
    FROM oas.tracked_columns t WHERE t.table_oid = rel AND t.addressing = 'schema';
    SELECT coalesce(string_agg(convert_to(a, 'UTF8') || pg_catalog.decode('00', 'hex'), ''::bytea ORDER BY n), ''::bytea)
      INTO fill_want FROM unnest(fill_args) WITH ORDINALITY u(a, n);
    SELECT tg.tgargs INTO fill_have FROM pg_trigger tg WHERE tg.tgrelid = rel AND tg.tgname = 'oas_fill_values';
    IF fill_have IS DISTINCT FROM fill_want OR (fill_have IS NOT NULL AND cardinality(fill_args) = 0) THEN
        IF fill_have IS NOT NULL THEN
            EXECUTE format('DROP TRIGGER oas_fill_values ON %s', tbl);
        END IF;
        IF cardinality(fill_args) > 0 THEN
            EXECUTE format('CREATE TRIGGER oas_fill_values BEFORE INSERT OR UPDATE ON %s
                            FOR EACH ROW EXECUTE FUNCTION oas._fill_values(%s)', tbl,
                           (SELECT string_agg(quote_literal(a), ', ' ORDER BY n) FROM unnest(fill_args) WITH ORDINALITY u(a, n)));
        END IF;
    END IF;

    SELECT tg.tgargs INTO have FROM pg_trigger tg WHERE tg.tgrelid = rel AND tg.tgname = 'oas_track_insert';
    IF have IS NOT DISTINCT FROM want AND cardinality(args) > 0 THEN
        RETURN;
    END IF;
    FOR c IN SELECT tg.tgname FROM pg_trigger tg
             WHERE tg.tgrelid = rel AND tg.tgname IN ('oas_track_insert', 'oas_track_update',
                                                     'oas_track_delete', 'oas_track_truncate') LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', c.tgname, tbl);
    END LOOP;
    IF cardinality(args) = 0 THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TRIGGER oas_track_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_refs
                    FOR EACH STATEMENT EXECUTE FUNCTION oas._track_refs(%s)', tbl,
                   (SELECT string_agg(quote_literal(a), ', ' ORDER BY n) FROM unnest(args) WITH ORDINALITY u(a, n)));
    EXECUTE format('CREATE TRIGGER oas_track_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS old_refs NEW TABLE AS new_refs
                    FOR EACH STATEMENT EXECUTE FUNCTION oas._track_refs(%s)', tbl,
                   (SELECT string_agg(quote_literal(a), ', ' ORDER BY n) FROM unnest(args) WITH ORDINALITY u(a, n)));
    EXECUTE format('CREATE TRIGGER oas_track_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_refs
                    FOR EACH STATEMENT EXECUTE FUNCTION oas._track_refs(%s)', tbl,
                   (SELECT string_agg(quote_literal(a), ', ' ORDER BY n) FROM unnest(args) WITH ORDINALITY u(a, n)));
    EXECUTE format('CREATE TRIGGER oas_track_truncate BEFORE TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION oas._track_truncate()', tbl);
END
$fn$;

DROP FUNCTION oas.lock_stripe(text, text);

-- Last, as in a fresh install: every function made from Rust gets its doc comment.
REVOKE ALL ON FUNCTION oas._comment_functions() FROM PUBLIC;
SELECT oas._comment_functions();
