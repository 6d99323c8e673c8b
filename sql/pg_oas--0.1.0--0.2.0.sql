-- pg_oas 0.1.0 -> 0.2.0: the security release (issue 9). Run by ALTER EXTENSION pg_oas UPDATE.
-- A fresh install of 0.2.0 and 0.1.0 updated with this script must be the same: the test
-- tests/test_upgrade.py compares their catalogs.

-- Administrators change the store catalog only through the checked functions, which write as the
-- extension's owner (a direct INSERT skipped the check that a file store needs server-file roles).
REVOKE INSERT, UPDATE, DELETE ON oas.store, oas.store_secret FROM oas_admin;
REVOKE ALL ON SEQUENCE oas.store_version_seq FROM oas_admin;
-- Likewise the collector's tables and the ledger: oas_admin reads them, the owner writes them.
REVOKE INSERT, UPDATE, DELETE ON oas.gc_run, oas.gc_candidate, oas.gc_trash, oas.gc_known_schema FROM oas_admin;
REVOKE INSERT, DELETE ON oas.ref_log FROM oas_admin;
REVOKE ALL ON SEQUENCE oas.gc_run_run_id_seq, oas.ref_log_id_seq FROM oas_admin;

-- Functions that act on every store or table, or write the catalog, pin search_path.
ALTER FUNCTION oas.oas_gc(boolean, text, interval, interval) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION oas.oas_gc_purge(interval, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION oas.oas_gc_restore(bigint, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION oas._gc_ensure_present(text, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION oas.oas_store_create(text, jsonb, boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION oas.oas_store_alter(text, jsonb) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION oas.oas_store_drop(text, boolean, boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION oas.oas_store_import(jsonb) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION oas.oas_store_set_default(text) SET search_path = pg_catalog, pg_temp;

-- Writers give up after oas.lock_timeout instead of waiting forever for a stripe.
CREATE FUNCTION oas."_lock_stripes"(
	"keys" INT[] /* Vec < i32 > */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'lock_stripes_wrapper';

CREATE OR REPLACE FUNCTION oas.lock_stripe(store text, path text) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
-- By path alone: two store names for one place (a DataJoint config may name a bucket twice) must
-- meet on the same stripe. Unrelated objects that share a stripe only wait for each other.
AS $$ SELECT pg_catalog.hashtext(path) OPERATOR(pg_catalog.&) 1023 $$;

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
        -- (store, path) of each reference in a transition table.
        refs_of := format($q$SELECT coalesce(nullif(r->>'store', ''), %L) AS store, r->>'path' AS path
                             FROM (SELECT %I AS r FROM %%s) t
                             WHERE jsonb_typeof(r) = 'object' AND r ? 'path'$q$,
                          coalesce(col_store, ''), col);
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
        PERFORM oas._lock_stripes(ARRAY(SELECT DISTINCT oas.lock_stripe(u.s, u.p)
                                        FROM unnest(add_stores, add_paths) u(s, p) ORDER BY 1));
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

-- Scans of other roles' tables pin search_path and never run row-security policies.
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
    key_expr text;
    ref_store text;
    found_problem text;
    checked bigint := 0;
    broken bigint := 0;
    skipped int := 0;
BEGIN
    FOR col IN SELECT t.* FROM oas.tracked_columns t ORDER BY t.schema_name, t.table_name, t.column_name LOOP
        IF NOT pg_catalog.has_table_privilege(col.table_oid, 'SELECT') THEN
            RAISE NOTICE 'oas_verify: skipping %.%.% (no SELECT privilege on the table)',
                col.schema_name, col.table_name, col.column_name;
            skipped := skipped + 1;
            CONTINUE;
        END IF;
        IF pg_catalog.row_security_active(col.table_oid) THEN
            RAISE NOTICE 'oas_verify: skipping %.%.% (row security applies to you; its owner or a role with BYPASSRLS can check it)',
                col.schema_name, col.table_name, col.column_name;
            skipped := skipped + 1;
            CONTINUE;
        END IF;
        SELECT 'jsonb_build_object(' || string_agg(format('%L, %I', a.attname, a.attname), ', '
                                                   ORDER BY array_position(i.indkey::int2[], a.attnum)) || ')'
          INTO key_expr
          FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
         WHERE i.indrelid = col.table_oid AND i.indisprimary;
        key_expr := coalesce(key_expr, 'jsonb_build_object(''ctid'', ctid::text)');
        -- ::jsonb: a column of a domain over jsonb must not change the record's type per column.
        FOR rec IN EXECUTE format('SELECT %s AS k, %I::jsonb AS ref FROM %s WHERE %I IS NOT NULL',
                                  key_expr, col.column_name, col.table_oid, col.column_name) LOOP
            ref_store := coalesce(nullif(rec.ref->>'store', ''), col.resolved_store);
            CONTINUE WHEN only_store IS NOT NULL AND ref_store IS DISTINCT FROM only_store;
            checked := checked + 1;
            found_problem := oas.oas_check_reference(rec.ref, check_content);
            IF found_problem IS NOT NULL THEN
                broken := broken + 1;
                schema_name := col.schema_name;
                table_name := col.table_name;
                column_name := col.column_name;
                row_key := rec.k;
                store := ref_store;
                path := rec.ref->>'path';
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
    FOR col IN SELECT t.* FROM oas.tracked_columns t ORDER BY t.schema_name, t.table_name, t.column_name LOOP
        CONTINUE WHEN NOT pg_catalog.has_table_privilege(col.table_oid, 'SELECT')
                   OR pg_catalog.row_security_active(col.table_oid);
        RETURN QUERY EXECUTE format($q$
            WITH r AS (
                SELECT coalesce(nullif(%1$I->>'store', ''), %2$L) AS s,
                       %1$I->>'path' AS p,
                       CASE WHEN jsonb_typeof(%1$I->'size') = 'number' THEN (%1$I->>'size')::numeric END AS z
                FROM %3$s WHERE %1$I IS NOT NULL),
            o AS (SELECT DISTINCT ON (s, p) s, p, z FROM r)
            SELECT o.s, %4$L::text, %5$L::text, %1$L::text, %6$L::text,
                   (SELECT count(*) FROM r WHERE r.s IS NOT DISTINCT FROM o.s),
                   count(*), coalesce(sum(o.z), 0), count(*) FILTER (WHERE o.z IS NULL)
            FROM o GROUP BY o.s $q$,
            col.column_name, col.resolved_store, col.table_oid, col.schema_name, col.table_name, col.codec);
    END LOOP;
END
$fn$;

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
    FOR col IN SELECT t.* FROM oas.tracked_columns t ORDER BY t.schema_name, t.table_name, t.column_name LOOP
        IF pg_catalog.has_table_privilege(col.table_oid, 'SELECT')
           AND NOT pg_catalog.row_security_active(col.table_oid) THEN
            EXECUTE format('SELECT count(*) FROM %1$s WHERE %2$I IS NOT NULL
                              AND coalesce(nullif(%2$I->>''store'', ''''), %3$L) = %4$L',
                           col.table_oid, col.column_name, col.resolved_store, store_name) INTO n;
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

-- Per-store privileges: read, write, admin.
CREATE TABLE oas.store_grant (
    store      text NOT NULL REFERENCES oas.store (name) ON DELETE CASCADE ON UPDATE CASCADE,
    grantee    regrole NOT NULL,
    privilege  text NOT NULL CHECK (privilege IN ('read', 'write', 'admin')),
    granted_by name NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store, grantee, privilege)
);
COMMENT ON TABLE oas.store_grant IS 'pg_oas per-store privileges (read, write, admin); change them with oas_store_grant/oas_store_revoke';

CREATE VIEW oas.store_privileges AS
SELECT g.store,
       CASE WHEN g.grantee::oid = 0 THEN 'PUBLIC' ELSE g.grantee::text END AS grantee,
       g.privilege,
       g.granted_by,
       g.granted_at
FROM oas.store_grant g;
COMMENT ON VIEW oas.store_privileges IS 'pg_oas: who may read, write or administer each store''s objects';

SELECT pg_catalog.pg_extension_config_dump('oas.store_grant', '');
REVOKE ALL ON oas.store_grant FROM PUBLIC;
GRANT SELECT ON oas.store_grant, oas.store_privileges TO PUBLIC;
-- Every existing store goes on as before 0.2.0: PUBLIC reads and writes its objects.
INSERT INTO oas.store_grant (store, grantee, privilege, granted_by)
SELECT s.name, 0::oid::regrole, p, s.created_by FROM oas.store s, unnest(ARRAY['read', 'write']) p;

CREATE FUNCTION oas."oas_store_grant"(
	"store" TEXT, /* & str */
	"privilege" TEXT, /* & str */
	"role" TEXT /* & str */
) RETURNS bool /* bool */
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_store_grant_wrapper';

CREATE FUNCTION oas."oas_store_revoke"(
	"store" TEXT, /* & str */
	"privilege" TEXT, /* & str */
	"role" TEXT /* & str */
) RETURNS bool /* bool */
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_store_revoke_wrapper';

-- A reference is not a capability: reads need a row the reader may SELECT that references the
-- object, unless an administrator switches the check off for a store.
ALTER TABLE oas.store ADD COLUMN require_references boolean NOT NULL DEFAULT true;
CREATE OR REPLACE VIEW oas.stores AS
SELECT s.name,
       s.protocol,
       s.is_default,
       s.is_filepath_default,
       s.spec,
       (sec.store IS NOT NULL) AS has_credentials,
       s.version,
       s.created_at,
       s.created_by,
       s.updated_at,
       s.require_references
FROM oas.store s
LEFT JOIN oas.store_secret sec ON sec.store = s.name;

CREATE FUNCTION oas."oas_store_require_references"(
	"store" TEXT, /* & str */
	"required" bool /* bool */
) RETURNS bool /* bool */
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_store_require_references_wrapper';

-- Compiles the same under any standard_conforming_strings (no backslash literal).
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
    FOR c IN SELECT t.column_name, t.resolved_store FROM oas.tracked_columns t
             WHERE t.table_oid = rel
               AND NOT EXISTS (SELECT 1 FROM oas.ref_log l WHERE l.table_oid = rel
                               AND l.column_name = t.column_name
                               GROUP BY l.store, l.path HAVING sum(l.delta) <> 0) LOOP
        EXECUTE format($q$INSERT INTO oas.ref_log (op, table_oid, schema_name, table_name, column_name, store, path, delta)
                          SELECT 'ATTACH', $1, $2, $3, $4, s, p, count(*)
                          FROM (SELECT coalesce(nullif(r->>'store', ''), $5) AS s, r->>'path' AS p
                                FROM (SELECT %I AS r FROM %s) x
                                WHERE jsonb_typeof(r) = 'object' AND r ? 'path') y
                          GROUP BY s, p$q$, c.column_name, tbl)
            USING rel, sch, relname, c.column_name, coalesce(c.resolved_store, '');
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
