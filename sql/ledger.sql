-- The reference ledger and what keeps it: the statement triggers on tracked tables, TRUNCATE
-- and DROP, and the event triggers that give new and changed tables their triggers. It uses
-- oas._reference and oas._tracked_refs (tracking.sql) and the collector's checks (collector.sql).
-- The design is in docs/gc-design.md.

-- The ledger: every reference a statement creates (+) or drops (-), per table and column. It is
-- an ordinary table, so it lives and dies with the transaction. It is a record and a hint, never
-- the collector's reason to delete: triggers can be disabled or bypassed.
CREATE TABLE oas.ref_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    xid         xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    op          text NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'DROP',
                                            'ATTACH', 'DETACH', 'COMPACT', 'REBUILD')),
    table_oid   oid NOT NULL,
    schema_name text NOT NULL,
    table_name  text NOT NULL,
    column_name text NOT NULL,
    store       text NOT NULL,
    path        text NOT NULL,
    delta       bigint NOT NULL
);
CREATE INDEX ref_log_object ON oas.ref_log (store, path);
CREATE INDEX ref_log_column ON oas.ref_log (table_oid, column_name);
COMMENT ON TABLE oas.ref_log IS
    'pg_oas reference ledger: references created (+) and dropped (-) per statement; compacted by oas_gc';

-- What the ledger says each column references now (net count per object).
CREATE VIEW oas.ledger AS
SELECT store, path, table_oid, column_name, sum(delta) AS refs, max(at) AS last_change
FROM oas.ref_log
GROUP BY store, path, table_oid, column_name
HAVING sum(delta) <> 0;
COMMENT ON VIEW oas.ledger IS 'pg_oas: references per object and column, as the ledger records them';

REVOKE ALL ON oas.ref_log FROM PUBLIC;
-- Read by a collector (oas_admin); written by the extension's owner only (the triggers are
-- SECURITY DEFINER, the collector switches to it).
GRANT SELECT ON oas.ref_log, oas.ledger TO oas_admin;

-- The statement trigger on tracked tables (INSERT, UPDATE, DELETE; transition tables new_refs and
-- old_refs). Arguments: triples of (column, store from the column's codec or '', kind): kind 't'
-- for a managed column, 'b' for a managed column of DataJoint blobs (<blob@>, or a custom codec
-- chained to <blob>: each new object must be a blob), 'f' for <filepath@> (user-managed files:
-- each new path must be registrable). It records each column's net change per object, then, for
-- every managed object that gains a reference, takes the object's stripe lock and makes sure a
-- collector has not moved it away.
CREATE FUNCTION oas._track_refs() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    i int := 0;
    col text;
    col_store text;
    kind text;
    default_store text;
    root_schema text;
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
        kind := TG_ARGV[i + 2];
        i := i + 3;
        -- A pending value (oas_npy(), oas_blob(), ...) that no row trigger stored (a column
        -- without one, or triggers bypassed) would lose its bytes: refuse it.
        IF TG_OP <> 'DELETE' THEN
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM new_refs WHERE jsonb_typeof(%1$I) = ''object'' AND %1$I ? ''oas_pending'')', col)
                INTO pending;
            IF pending THEN
                RAISE EXCEPTION 'pg_oas: column "%" of "%.%" received a pending value that was never stored', col, TG_TABLE_SCHEMA, TG_TABLE_NAME
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'pending values go into columns of their codec (oas_npy() into <npy@>, oas_blob() into <blob@>, ...), whose row trigger stores them';
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
        IF kind = 'b' AND cardinality(got_paths) > 0 THEN
            -- <blob@>: a new reference must name a DataJoint blob, or DataJoint reads None.
            IF root_schema IS NULL THEN
                SELECT n.nspname INTO root_schema FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.oid = coalesce(pg_partition_root(TG_RELID), TG_RELID);
            END IF;
            PERFORM oas._check_blobs(got_stores, got_paths, root_schema);
        END IF;
        IF kind <> 'f' THEN
            add_stores := add_stores || got_stores;
            add_paths := add_paths || got_paths;
        ELSIF cardinality(got_paths) > 0 THEN
            -- <filepath@>: a new reference must name a file or folder that may be registered.
            PERFORM oas._check_filepaths(got_stores, got_paths);
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

-- Release what the ledger says table `rel` references (its net per column and object), for rows
-- or columns that go without the statement triggers seeing them; `op` says why (TRUNCATE, DROP,
-- DETACH). Only the columns `only_columns` (NULL: all) and not those in `keep_columns`. Releasing
-- twice releases nothing more: the first call brings the net to zero. Called by the SECURITY
-- DEFINER functions below; nobody else may write the ledger.
CREATE FUNCTION oas._release(op text, rel oid, only_columns text[] DEFAULT NULL,
                             keep_columns text[] DEFAULT NULL) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    INSERT INTO oas.ref_log (op, table_oid, schema_name, table_name, column_name, store, path, delta)
    -- Named as the table is now, or (dropped) as the ledger last knew it.
    SELECT _release.op, rel, coalesce(c.nspname, min(l.schema_name)), coalesce(c.relname, min(l.table_name)),
           l.column_name, l.store, l.path, -sum(l.delta)
    FROM oas.ref_log l
    LEFT JOIN (SELECT n.nspname::text, cl.relname::text FROM pg_class cl
               JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE cl.oid = rel) c ON true
    WHERE l.table_oid = rel
      AND (only_columns IS NULL OR l.column_name = ANY (only_columns))
      AND (keep_columns IS NULL OR l.column_name <> ALL (keep_columns))
    GROUP BY l.column_name, l.store, l.path, c.nspname, c.relname HAVING sum(l.delta) <> 0;
$fn$;

-- TRUNCATE removes rows without row triggers: release what the ledger says the table references.
CREATE FUNCTION oas._track_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM oas._release('TRUNCATE', TG_RELID);
    RETURN NULL;
END
$fn$;

-- Bring a table's triggers and ledger in line with its tracked columns: (re)create the triggers
-- when the tracked columns changed, record the references of newly tracked columns (ATTACH) and
-- release those of columns no longer tracked (DETACH).
CREATE FUNCTION oas._sync_table(rel oid) RETURNS void
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
                 CASE WHEN t.addressing = 'filepath' THEN 'f' WHEN t.chain_end = 'blob' THEN 'b' ELSE 't' END AS m
          FROM oas.tracked_columns t WHERE t.table_oid = rel) cols,
         LATERAL (VALUES (1, cols.column_name), (2, cols.st), (3, cols.m)) v(ord, x);
    SELECT coalesce(string_agg(convert_to(a, 'UTF8') || pg_catalog.decode('00', 'hex'), ''::bytea ORDER BY n), ''::bytea)
      INTO want FROM unnest(args) WITH ORDINALITY u(a, n);
    -- Columns that take pending values (<npy@>, <object@>, <blob@>, <attach@>, <hash@>, and
    -- registered custom codecs chained to them) also get the row trigger that stores them.
    SELECT coalesce(array_agg(t.column_name ORDER BY t.column_name), '{}') INTO fill_args
    FROM oas.tracked_columns t WHERE t.table_oid = rel AND t.addressing IN ('schema', 'hash');
    SELECT coalesce(string_agg(convert_to(a, 'UTF8') || pg_catalog.decode('00', 'hex'), ''::bytea ORDER BY n), ''::bytea)
      INTO fill_want FROM unnest(fill_args) WITH ORDINALITY u(a, n);
    SELECT tg.tgargs INTO fill_have FROM pg_trigger tg WHERE tg.tgrelid = rel AND tg.tgname = 'oas_fill_values';
    -- A partition has its root's row trigger (cloned by PostgreSQL, dropped only with the root's).
    IF NOT EXISTS (SELECT 1 FROM pg_trigger tg WHERE tg.tgrelid = rel AND tg.tgname = 'oas_fill_values'
                   AND tg.tgparentid <> 0)
       AND (fill_have IS DISTINCT FROM fill_want OR (fill_have IS NOT NULL AND cardinality(fill_args) = 0)) THEN
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

-- Make the ledger say what the rows reference now (of table `only_table`, or of every tracked
-- table): one REBUILD row per table, column and object whose net count differs, returned. For
-- rows written with the triggers bypassed (session_replication_role = replica, DISABLE TRIGGER,
-- a restore). Rebuilds run one at a time (SHARE UPDATE EXCLUSIVE on oas.ref_log, which writers
-- of the ledger do not wait for), and each tracked table is locked SHARE ROW EXCLUSIVE until the
-- transaction ends: its writers wait, its readers do not. The rows are then read under a new
-- snapshot (at READ COMMITTED) that sees every write committed before. The extension's owner
-- calls it: oas_ledger_rebuild() (collector's privileges), and a restore (_on_ddl_end). Rows are
-- counted as the triggers count them (oas._tracked_refs, a value with a path; a store of ''
-- where a reference names none and there is no default store).
CREATE FUNCTION oas._ledger_rebuild(only_table oid DEFAULT NULL)
RETURNS TABLE (schema_name text, table_name text, column_name text, store text, path text, delta bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET row_security = off
AS $fn$
DECLARE
    col record;
    locked oid[] := '{}';
    parts text[] := '{}';
BEGIN
    LOCK TABLE oas.ref_log IN SHARE UPDATE EXCLUSIVE MODE;
    -- Tables in the order of their names (the order of oas._tracked_refs).
    FOR col IN SELECT t.* FROM oas._tracked_refs(only_table => only_table) t
               WHERE t.schema_name OPERATOR(pg_catalog.<>) 'oas' LOOP
        IF NOT col.table_oid::oid OPERATOR(pg_catalog.=) ANY (locked) THEN
            EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', col.table_oid);
            locked := locked || col.table_oid::oid;
        END IF;
        parts := parts || format('SELECT %s::pg_catalog.oid, %L::text, coalesce(q.store, %L), q.path, pg_catalog.count(*)
                                  FROM (%s) q WHERE q.path IS NOT NULL GROUP BY 3, 4',
                                 col.table_oid::oid, col.column_name, '', col.refs);
    END LOOP;
    RETURN QUERY EXECUTE format($q$
        WITH now_refs (table_oid, column_name, store, path, n) AS (%s),
        logged AS (SELECT l.table_oid, l.column_name, l.store, l.path, pg_catalog.sum(l.delta) AS n,
                          pg_catalog.min(l.schema_name) AS s, pg_catalog.min(l.table_name) AS t
                   FROM oas.ref_log l
                   WHERE $1 IS NULL OR l.table_oid OPERATOR(pg_catalog.=) $1
                   GROUP BY 1, 2, 3, 4),
        diff AS (SELECT coalesce(a.table_oid, l.table_oid) AS table_oid,
                        coalesce(a.column_name, l.column_name) AS column_name,
                        coalesce(a.store, l.store) AS store,
                        coalesce(a.path, l.path) AS path,
                        coalesce(a.n, 0) OPERATOR(pg_catalog.-) coalesce(l.n, 0) AS delta,
                        l.s, l.t
                 FROM now_refs a FULL JOIN logged l
                   ON a.table_oid OPERATOR(pg_catalog.=) l.table_oid
                  AND a.column_name OPERATOR(pg_catalog.=) l.column_name
                  AND a.store OPERATOR(pg_catalog.=) l.store AND a.path OPERATOR(pg_catalog.=) l.path)
        INSERT INTO oas.ref_log AS r (op, table_oid, schema_name, table_name, column_name, store, path, delta)
        SELECT 'REBUILD', d.table_oid, coalesce(n.nspname::text, d.s), coalesce(c.relname::text, d.t),
               d.column_name, d.store, d.path, d.delta
        FROM diff d
        LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.table_oid
        LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        WHERE d.delta OPERATOR(pg_catalog.<>) 0
        RETURNING r.schema_name, r.table_name, r.column_name, r.store, r.path, r.delta$q$,
        CASE WHEN cardinality(parts) OPERATOR(pg_catalog.=) 0
             THEN 'SELECT NULL::pg_catalog.oid, NULL::text, NULL::text, NULL::text, NULL::bigint WHERE false'
             ELSE array_to_string(parts, ' UNION ALL ') END)
        USING only_table;
END
$fn$;
REVOKE ALL ON FUNCTION oas._ledger_rebuild(oid) FROM PUBLIC;

-- DDL that can change which columns are tracked: CREATE TABLE, ALTER TABLE (rename, type) and
-- COMMENT (DataJoint's codec markers). Tables DataJoint creates get their triggers here.
--
-- Except in a restore (pg_restore, or psql running a pg_dump script), recognised by the setting
-- every dump makes first: check_function_bodies = off. A dump holds the tables' triggers, created
-- after the data is loaded: triggers made here at COMMENT time would make the dump's own CREATE
-- TRIGGER fail, and would check every row as it loads (the stores' catalog rows may not be there
-- yet). So a restore gets exactly the triggers the dump holds, and when it creates a table's
-- oas_track_insert trigger (the rows are in by then), that table's ledger is rebuilt.
CREATE FUNCTION oas._on_ddl_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r record;
BEGIN
    IF NOT pg_catalog.current_setting('check_function_bodies')::boolean THEN
        FOR r IN SELECT DISTINCT tg.tgrelid FROM pg_catalog.pg_event_trigger_ddl_commands() e
                 JOIN pg_catalog.pg_trigger tg ON tg.oid OPERATOR(pg_catalog.=) e.objid
                 WHERE e.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::regclass
                   AND tg.tgname OPERATOR(pg_catalog.=) 'oas_track_insert'
                   AND tg.tgfoid OPERATOR(pg_catalog.=) 'oas._track_refs()'::regprocedure::oid
                   AND tg.tgparentid OPERATOR(pg_catalog.=) 0 LOOP
            PERFORM oas._ledger_rebuild(r.tgrelid);
        END LOOP;
        RETURN;
    END IF;
    FOR r IN SELECT DISTINCT objid FROM pg_catalog.pg_event_trigger_ddl_commands()
             WHERE classid = 'pg_catalog.pg_class'::regclass AND NOT in_extension LOOP
        PERFORM oas._sync_table(r.objid);
    END LOOP;
END
$fn$;

-- DROP TABLE, DROP COLUMN and DROP SCHEMA remove rows without triggers: release their references.
CREATE FUNCTION oas._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    d record;
BEGIN
    FOR d IN SELECT o.objid, o.object_type, o.address_names
             FROM pg_catalog.pg_event_trigger_dropped_objects() o
             WHERE o.classid = 'pg_catalog.pg_class'::regclass
               AND o.object_type IN ('table', 'table column') LOOP
        PERFORM oas._release('DROP', d.objid,
                             CASE WHEN d.object_type = 'table column' THEN ARRAY[d.address_names[3]] END);
    END LOOP;
END
$fn$;

CREATE EVENT TRIGGER oas_track_ddl ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'COMMENT', 'CREATE TABLE AS', 'SELECT INTO',
                 'CREATE TRIGGER')
    EXECUTE FUNCTION oas._on_ddl_end();
CREATE EVENT TRIGGER oas_track_drop ON sql_drop
    WHEN TAG IN ('DROP TABLE', 'ALTER TABLE', 'DROP SCHEMA', 'DROP OWNED')
    EXECUTE FUNCTION oas._on_sql_drop();

REVOKE ALL ON FUNCTION oas._sync_table(oid) FROM PUBLIC;
-- Registering a codec re-derives the triggers of its columns (oas_codec_register).
GRANT EXECUTE ON FUNCTION oas._sync_table(oid) TO oas_admin;
REVOKE ALL ON FUNCTION oas._release(text, oid, text[], text[]) FROM PUBLIC;
-- They read any store with the server's credentials: only the trigger (as the owner) calls them.
REVOKE ALL ON FUNCTION oas._check_filepaths(text[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION oas._check_blobs(text[], text[], text) FROM PUBLIC;
