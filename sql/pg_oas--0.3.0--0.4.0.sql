-- pg_oas 0.3.0 -> 0.4.0 (ALTER EXTENSION pg_oas UPDATE). Each change adds its statements here,
-- with a line in this list; tests/client/test_upgrade.py checks the result equals a fresh install.
--   * attachments: oas_attach_pack, oas_attach_unpack, oas_attach_put, oas_attach_get are new;
--   * a file of a folder object: oas_object_file_read, oas_object_file_size are new;
--   * oas._gc_horizon: only transactions that can write this database's rows hold it back;
--   * <filepath@>: oas_filepath registers a path; the ledger's trigger checks new references
--     (oas._check_filepaths);
--   * DataJoint blobs: oas_blob_pack (text, jsonb, anyarray), oas_blob_unpack, oas_blob_unpack_array,
--     oas_blob_put, oas_blob_get are new.

-- Attachments (src/api/attach.rs): DataJoint's filename\0contents from a name and bytes, and back.
CREATE  FUNCTION "oas_attach_pack"(
	"filename" TEXT, /* & str */
	"contents" bytea /* & [u8] */
) RETURNS bytea /* Vec < u8 > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_attach_pack_wrapper';
CREATE  FUNCTION "oas_attach_unpack"(
	"value" bytea /* & [u8] */
) RETURNS TABLE (
	"filename" TEXT,  /* String */
	"contents" bytea  /* Vec < u8 > */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_attach_unpack_wrapper';
CREATE  FUNCTION "oas_attach_put"(
	"filename" TEXT, /* & str */
	"contents" bytea, /* Option < & [u8] > */
	"store" TEXT DEFAULT NULL, /* Option < & str > */
	"schema" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS jsonb /* Option < JsonB > */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_attach_put_wrapper';
CREATE  FUNCTION "oas_attach_get"(
	"reference" jsonb /* JsonB */
) RETURNS TABLE (
	"filename" TEXT,  /* String */
	"contents" bytea  /* Vec < u8 > */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_attach_get_wrapper';

-- One file of a folder object by its path below the folder (src/api/object.rs).
CREATE  FUNCTION "oas_object_file_read"(
	"reference" jsonb, /* Option < JsonB > */
	"subpath" TEXT, /* Option < & str > */
	"offset" bigint DEFAULT 0, /* Option < i64 > */
	"length" bigint DEFAULT NULL /* Option < i64 > */
) RETURNS bytea /* :: std :: option :: Option < Vec < u8 > > */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_object_file_read_wrapper';
CREATE  FUNCTION "oas_object_file_size"(
	"reference" jsonb, /* JsonB */
	"subpath" TEXT /* & str */
) RETURNS bigint /* i64 */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_object_file_size_wrapper';

-- The collector's horizon (sql/collector.sql).
CREATE OR REPLACE FUNCTION oas._gc_horizon(grace interval) RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least(now() - grace,
                 coalesce((SELECT min(a.xact_start) FROM pg_catalog.pg_stat_activity a
                           WHERE a.pid <> pg_catalog.pg_backend_pid() AND a.xact_start IS NOT NULL
                             AND (a.datid OPERATOR(pg_catalog.=)
                                      (SELECT d.oid FROM pg_catalog.pg_database d
                                       WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
                                  OR (a.datid IS NULL AND a.backend_type OPERATOR(pg_catalog.=) 'background worker'))
                             AND a.backend_type IN ('client backend', 'background worker')),
                          'infinity'),
                 coalesce((SELECT min(p.prepared) FROM pg_catalog.pg_prepared_xacts p
                           WHERE p.database OPERATOR(pg_catalog.=) pg_catalog.current_database()),
                          'infinity'))
$$;

-- <filepath@> (src/api/filepath.rs): registering a path, and the trigger's check of new references.
CREATE  FUNCTION "oas_filepath"(
	"path" TEXT, /* & str */
	"store" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS jsonb /* JsonB */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_filepath_wrapper';
CREATE  FUNCTION "_check_filepaths"(
	"stores" TEXT[], /* Vec < Option < String > > */
	"paths" TEXT[] /* Vec < Option < String > > */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_filepaths_wrapper';
REVOKE ALL ON FUNCTION oas._check_filepaths(text[], text[]) FROM PUBLIC;

-- The ledger's trigger (sql/ledger.sql) calls it for <filepath@> columns.
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

-- DataJoint blobs (src/api/blob.rs, oas_core::blob): pack, unpack, put and get.
CREATE  FUNCTION "oas_blob_get"(
	"reference" jsonb /* JsonB */
) RETURNS jsonb /* JsonB */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_blob_get_wrapper';
CREATE  FUNCTION "oas_blob_pack"(
	"value" TEXT /* & str */
) RETURNS bytea /* Vec < u8 > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_blob_pack_wrapper';
CREATE  FUNCTION "oas_blob_pack"(
	"values" anyarray /* pgrx :: AnyArray */
) RETURNS bytea /* Vec < u8 > */
IMMUTABLE STRICT PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_blob_pack_array_wrapper';
CREATE  FUNCTION "oas_blob_pack"(
	"value" jsonb /* JsonB */
) RETURNS bytea /* Vec < u8 > */
IMMUTABLE STRICT PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_blob_pack_jsonb_wrapper';
CREATE  FUNCTION "oas_blob_put"(
	"value" TEXT, /* Option < & str > */
	"store" TEXT DEFAULT NULL, /* Option < & str > */
	"schema" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS jsonb /* Option < JsonB > */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_blob_put_wrapper';
CREATE  FUNCTION "oas_blob_unpack"(
	"value" bytea /* & [u8] */
) RETURNS jsonb /* JsonB */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_blob_unpack_wrapper';
CREATE  FUNCTION "oas_blob_unpack_array"(
	"value" bytea /* & [u8] */
) RETURNS double precision[] /* super :: npy :: Float8Array */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_blob_unpack_array_wrapper';

-- Last, as in a fresh install: every function made from Rust gets its doc comment.
SELECT oas._comment_functions();
