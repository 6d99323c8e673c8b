-- pg_oas 0.3.0 -> 0.4.0 (ALTER EXTENSION pg_oas UPDATE). Each change adds its statements here,
-- with a line in this list; tests/client/test_upgrade.py checks the result equals a fresh install.
--   * attachments: oas_attach_pack, oas_attach_unpack, oas_attach_put, oas_attach_get are new;
--   * a file of a folder object: oas_object_file_read, oas_object_file_size are new;
--   * oas._gc_horizon: only transactions that can write this database's rows hold it back;
--   * <filepath@>: oas_filepath registers a path; the ledger's trigger checks new references
--     (oas._check_filepaths);
--   * DataJoint blobs: oas_blob_pack (text, jsonb, anyarray), oas_blob_unpack, oas_blob_unpack_array,
--     oas_blob_put, oas_blob_get are new;
--   * oas_blob_pack(bytea) and oas_blob_pack(anynonarray) (as its to_jsonb) are new;
--   * pending hash-addressed values: oas_blob (text, jsonb, anyarray, bytea, anynonarray),
--     oas_attach, oas_hash are new; the row trigger oas._fill_values is now written in Rust (it reads the key from the row
--     itself) and serves <blob@>, <attach@> and <hash@> columns too; oas._write_pending is gone;
--   * <blob@> columns refuse references to bytes that are not a DataJoint blob (oas._check_blobs,
--     kind 'b' in the ledger trigger's arguments);
--   * custom codecs: oas.codec, oas_codec_register, oas_codec_drop, oas_encode, oas_decode,
--     oas._codec_end, oas._codec_call, oas._decode, oas._pending_codec; oas.tracked_columns has
--     chain_end and classifies columns by it; every tracked table's triggers are re-derived;
--   * oas_hash_get_many reads many hash-addressed references, several at once;
--   * oas_npy_slice_stats also returns requests, plan, merge_gap and estimated_ms;
--   * read-only stores (archives): oas.store.read_only, oas.stores shows it, oas_store_read_only
--     is new;
--   * zstd-compressed stores: oas.store.compression, oas.stores shows it, oas_store_compression
--     is new;
--   * copies between stores: oas._copy_to_store is new;
--   * jobs that rewrite a column in batches: the table oas.job, oas._job_step, oas._job_top_level,
--     oas._migrate_start, oas._move_start, oas._pending_stored, oas._job_stale and the procedures
--     oas._job_run, oas_migrate_column and oas_move are new.

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

-- Pending hash-addressed values, the Rust row trigger (src/api/write.rs), the blob check.
DROP FUNCTION oas._write_pending(oid, text, jsonb, jsonb);
CREATE OR REPLACE FUNCTION oas."_fill_values"() RETURNS trigger
LANGUAGE c
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', '_fill_values_wrapper';
CREATE  FUNCTION "oas_blob"(
	"value" TEXT /* Option < & str > */
) RETURNS jsonb /* Option < JsonB > */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_blob_text_wrapper';
CREATE  FUNCTION "oas_blob"(
	"value" jsonb /* Option < JsonB > */
) RETURNS jsonb /* Option < JsonB > */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_blob_jsonb_wrapper';
CREATE  FUNCTION "oas_blob"(
	"values" anyarray /* Option < pgrx :: AnyArray > */
) RETURNS jsonb /* Option < JsonB > */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_blob_array_wrapper';
CREATE  FUNCTION "oas_attach"(
	"filename" TEXT, /* Option < & str > */
	"contents" bytea /* Option < & [u8] > */
) RETURNS jsonb /* Option < JsonB > */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_attach_wrapper';
CREATE  FUNCTION "oas_hash"(
	"data" bytea /* Option < & [u8] > */
) RETURNS jsonb /* Option < JsonB > */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_hash_wrapper';
CREATE  FUNCTION "_pending_codec"(
	"pending" jsonb, /* JsonB */
	"codec" TEXT /* & str */
) RETURNS jsonb /* JsonB */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pending_codec_wrapper';
CREATE  FUNCTION "_check_blobs"(
	"stores" TEXT[], /* Vec < Option < String > > */
	"paths" TEXT[], /* Vec < Option < String > > */
	"schema" TEXT /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_blobs_wrapper';

CREATE  FUNCTION "oas_blob_pack"(
	"value" bytea /* & [u8] */
) RETURNS bytea /* Vec < u8 > */
IMMUTABLE STRICT PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_blob_pack_bytes_wrapper';
CREATE  FUNCTION "oas_blob"(
	"value" bytea /* Option < & [u8] > */
) RETURNS jsonb /* Option < JsonB > */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_blob_bytes_wrapper';

-- A value of any other type (numbers, booleans, dates, a row) packed as its to_jsonb: integers stay
-- ints, other numbers become floats, a row becomes a dict. (Text, jsonb, bytea and arrays have
-- their own forms.)
CREATE FUNCTION oas.oas_blob_pack(value anynonarray) RETURNS bytea
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT oas.oas_blob_pack(pg_catalog.to_jsonb(value)) $fn$;
COMMENT ON FUNCTION oas.oas_blob_pack(anynonarray) IS
    'pg_oas: a <blob> value from a number, boolean, date, row or any other non-array value, packed as its to_jsonb is';

CREATE FUNCTION oas.oas_blob(value anynonarray) RETURNS jsonb
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT oas.oas_blob(pg_catalog.to_jsonb(value)) $fn$;
COMMENT ON FUNCTION oas.oas_blob(anynonarray) IS
    'pg_oas: a <blob@> value (pending, stored by the row trigger) from a number, boolean, date, row or any other non-array value, packed as its to_jsonb is';

-- Custom codecs (sql/codecs.sql).
CREATE TABLE oas.codec (
    name          text PRIMARY KEY
                  CONSTRAINT codec_name_format CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]*$')
                  CONSTRAINT codec_not_built_in
                      CHECK (name <> ALL (ARRAY['blob', 'attach', 'hash', 'npy', 'object', 'filepath'])),
    chains_to     text NOT NULL,
    encode        regprocedure,
    decode        regprocedure,
    registered_by name NOT NULL DEFAULT current_user,
    registered_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE oas.codec IS
    'pg_oas: custom codecs registered in SQL (oas_codec_register): what each chains to, its encode and decode functions';
SELECT pg_catalog.pg_extension_config_dump('oas.codec', '');
REVOKE ALL ON oas.codec FROM PUBLIC;
GRANT SELECT ON oas.codec TO PUBLIC;
GRANT INSERT, DELETE ON oas.codec TO oas_admin;

-- The built-in codec `codec`'s chain ends at: itself for a built-in codec, NULL for a codec this
-- database does not know (a Python-only codec: tracked from its values' JSON alone).
CREATE FUNCTION oas._codec_end(codec text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
    WITH RECURSIVE chain(name, depth) AS (
        SELECT codec, 0
        UNION ALL
        SELECT c.chains_to, chain.depth OPERATOR(pg_catalog.+) 1
        FROM oas.codec c JOIN chain ON c.name OPERATOR(pg_catalog.=) chain.name
        WHERE chain.depth OPERATOR(pg_catalog.<) 32)
    SELECT chain.name FROM chain
    WHERE chain.name OPERATOR(pg_catalog.=) ANY (ARRAY['blob', 'attach', 'hash', 'npy', 'object', 'filepath'])
    LIMIT 1
$fn$;

-- The SQL text that calls `fn` on `arg` (an expression), schema-qualified, with the argument cast
-- to the function's own argument type so no other function of that name can be chosen. Every
-- role that uses a codec runs its functions, so a function runs only while an administrator (a
-- member of oas_admin) owns it and every type it takes and returns (and the types those are made
-- of: a type's owner can add casts, which the call and to_jsonb run): one given away since it
-- was registered (ALTER ... OWNER TO, REASSIGN OWNED), or whose owner left oas_admin, is refused,
-- as is one that was dropped. oas_codec_register checks a function the same way.
CREATE FUNCTION oas._codec_call(fn regprocedure, arg text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    call text;
    owner oid;
    types oid[];
    bad_type regtype;
    bad_owner regrole;
BEGIN
    SELECT pg_catalog.format('%I.%I((%s)::%s)', n.nspname, p.proname, arg,
                             pg_catalog.format_type(p.proargtypes[0], NULL)),
           p.proowner, ARRAY[p.proargtypes[0], p.prorettype]
      INTO call, owner, types
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
    WHERE p.oid OPERATOR(pg_catalog.=) fn;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pg_oas: codec function % no longer exists', fn
            USING ERRCODE = 'undefined_function',
                  HINT = 'SELECT * FROM oas.codec shows the codec; drop it and register it again';
    END IF;
    IF NOT pg_catalog.pg_has_role(owner, 'oas_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'pg_oas: codec function % is owned by %, who is not a member of oas_admin: it is not run', fn, owner::regrole
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'every role that uses a codec runs its functions: only functions an administrator owns run';
    END IF;
    -- The types, and what they are made of: a domain's base type, an array's element type, a
    -- composite type's attributes, a range's subtype.
    WITH RECURSIVE used(t) AS (
        SELECT u.t FROM pg_catalog.unnest(types) u(t)
        UNION
        SELECT x.t FROM used JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) used.t
        CROSS JOIN LATERAL (
            SELECT ty.typbasetype
            UNION ALL SELECT ty.typelem
            UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid OPERATOR(pg_catalog.=) ty.typrelid AND a.attnum OPERATOR(pg_catalog.>) 0
            UNION ALL SELECT r.rngsubtype FROM pg_catalog.pg_range r
                      WHERE r.rngtypid OPERATOR(pg_catalog.=) ty.oid OR r.rngmultitypid OPERATOR(pg_catalog.=) ty.oid
        ) x(t)
        WHERE x.t OPERATOR(pg_catalog.<>) 0)
    SELECT ty.oid, ty.typowner INTO bad_type, bad_owner
    FROM used JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) used.t
    WHERE NOT pg_catalog.pg_has_role(ty.typowner, 'oas_admin', 'MEMBER')
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'pg_oas: codec function % uses type %, owned by %, who is not a member of oas_admin: it is not run', fn, bad_type, bad_owner
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'a type''s owner can add casts that run wherever its values are converted: codec functions take and return built-in types or types an administrator owns';
    END IF;
    RETURN call;
END
$fn$;

-- Register a custom codec: `name` as DataJoint's column comments write it, `chains_to` a
-- built-in codec ('blob', 'attach', 'hash', 'npy', 'object', 'filepath') or a registered one,
-- `encode` a function of one argument whose result the chain's next codec takes, `decode` a
-- function of one argument of what the next codec gives: for 'blob' jsonb (the unpacked value);
-- for 'attach' and 'hash' bytea (the object's bytes); for 'npy', 'object' and 'filepath' jsonb
-- (the reference); for a registered codec what its decode returns. Either may be NULL.
CREATE FUNCTION oas.oas_codec_register(name text, chains_to text,
                                       encode regprocedure DEFAULT NULL,
                                       decode regprocedure DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    end_codec text;
    next oas.codec;
    fn regprocedure;
    proc pg_catalog.pg_proc;
    arg_type regtype;
    ret_type regtype;
    takes regtype;
BEGIN
    IF NOT pg_catalog.pg_has_role('oas_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'pg_oas: permission denied to register codec "%"', name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'only members of oas_admin register codecs';
    END IF;
    IF name IS NULL OR chains_to IS NULL THEN
        RAISE EXCEPTION 'pg_oas: a codec needs a name and what it chains to'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF EXISTS (SELECT 1 FROM oas.codec c WHERE c.name OPERATOR(pg_catalog.=) oas_codec_register.name) THEN
        RAISE EXCEPTION 'pg_oas: codec "%" is already registered', name
            USING ERRCODE = 'duplicate_object',
                  HINT = pg_catalog.format('drop it first with SELECT oas.oas_codec_drop(%L)', name);
    END IF;
    end_codec := oas._codec_end(oas_codec_register.chains_to);
    IF end_codec IS NULL THEN
        RAISE EXCEPTION 'pg_oas: codec "%" chains to "%", which is neither a built-in codec nor a registered one', name, chains_to
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'chain to blob, attach, hash, npy, object or filepath, or register the inner codec first';
    END IF;
    SELECT * INTO next FROM oas.codec c WHERE c.name OPERATOR(pg_catalog.=) oas_codec_register.chains_to;

    FOREACH fn IN ARRAY ARRAY[encode, decode] LOOP
        CONTINUE WHEN fn IS NULL;
        SELECT * INTO proc FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) fn;
        IF NOT FOUND OR proc.prokind <> 'f' THEN
            RAISE EXCEPTION 'pg_oas: % is not a function', fn
                USING ERRCODE = CASE WHEN FOUND THEN 'wrong_object_type' ELSE 'undefined_function' END;
        END IF;
        IF proc.pronargs <> 1 THEN
            RAISE EXCEPTION 'pg_oas: % must take exactly one argument', fn
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF proc.pronamespace = pg_catalog.pg_my_temp_schema() OR pg_catalog.pg_is_other_temp_schema(proc.pronamespace) THEN
            RAISE EXCEPTION 'pg_oas: % is a temporary function: it goes with its session', fn
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- A superuser is a member of every role, so this check alone would let one register a
        -- function an ordinary role owns (and can replace later): oas._codec_call refuses it.
        IF NOT pg_catalog.pg_has_role(proc.proowner, 'MEMBER') THEN
            RAISE EXCEPTION 'pg_oas: permission denied to register %: you do not own it', fn
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'every role that uses the codec runs its functions: register only functions you own';
        END IF;
        -- What every call checks: an administrator owns it and the types it uses.
        PERFORM oas._codec_call(fn, '$1');
    END LOOP;

    IF encode IS NOT NULL THEN
        SELECT p.prorettype INTO ret_type FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) encode;
        IF next.name IS NOT NULL THEN
            IF next.encode IS NULL THEN
                RAISE EXCEPTION 'pg_oas: codec "%" has no encode function to chain "%" to', chains_to, name
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            SELECT p.proargtypes[0] INTO takes FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) next.encode;
            IF ret_type <> takes THEN
                RAISE EXCEPTION 'pg_oas: % returns %, and codec "%" encodes %', encode, ret_type, chains_to, takes
                    USING ERRCODE = 'datatype_mismatch';
            END IF;
        ELSIF NOT (CASE end_codec
                WHEN 'blob' THEN ret_type IN ('jsonb'::regtype, 'json'::regtype, 'text'::regtype)
                                 OR (SELECT t.typcategory = 'A' FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) ret_type)
                WHEN 'npy' THEN ret_type = 'bytea'::regtype
                                 OR (SELECT t.typcategory = 'A' FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) ret_type)
                WHEN 'filepath' THEN false
                ELSE ret_type = 'bytea'::regtype END) THEN
            RAISE EXCEPTION 'pg_oas: % returns %, which <%> does not take', encode, ret_type, end_codec
                USING ERRCODE = 'datatype_mismatch',
                      HINT = CASE end_codec
                          WHEN 'blob' THEN 'an encode function chained to <blob> returns jsonb, json, text or an array (as oas_blob takes them)'
                          WHEN 'npy' THEN 'an encode function chained to <npy> returns a .npy file (bytea) or an array'
                          WHEN 'filepath' THEN '<filepath@> values are registered with oas_filepath(path, store): give such a codec no encode function'
                          WHEN 'attach' THEN 'an encode function chained to <attach> returns filename\0contents (oas_attach_pack(name, bytes))'
                          ELSE 'an encode function chained to <' || end_codec || '> returns bytea' END;
        END IF;
    END IF;

    IF decode IS NOT NULL THEN
        SELECT p.proargtypes[0] INTO arg_type FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) decode;
        IF next.name IS NOT NULL THEN
            IF next.decode IS NULL THEN
                RAISE EXCEPTION 'pg_oas: codec "%" has no decode function to chain "%" to', chains_to, name
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            SELECT p.prorettype INTO takes FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) next.decode;
        ELSE
            takes := CASE WHEN end_codec IN ('attach', 'hash') THEN 'bytea' ELSE 'jsonb' END;
        END IF;
        IF arg_type <> takes THEN
            RAISE EXCEPTION 'pg_oas: % takes %, and what it decodes is %', decode, arg_type, takes
                USING ERRCODE = 'datatype_mismatch';
        END IF;
    END IF;

    INSERT INTO oas.codec (name, chains_to, encode, decode)
    VALUES (oas_codec_register.name, oas_codec_register.chains_to, oas_codec_register.encode,
            oas_codec_register.decode);
    -- Columns of this codec are now classified by their chain's end: give them their triggers.
    PERFORM oas._sync_table(t.table_oid)
    FROM (SELECT DISTINCT c.table_oid FROM oas.tracked_columns c
          WHERE c.codec OPERATOR(pg_catalog.=) oas_codec_register.name) t;
END
$fn$;

-- Drop a registered codec (refused while another codec chains to it). Its columns are tracked
-- from their values' JSON again, as any codec this database does not know.
CREATE FUNCTION oas.oas_codec_drop(name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT pg_catalog.pg_has_role('oas_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'pg_oas: permission denied to drop codec "%"', name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'only members of oas_admin drop codecs';
    END IF;
    IF EXISTS (SELECT 1 FROM oas.codec c WHERE c.chains_to OPERATOR(pg_catalog.=) oas_codec_drop.name) THEN
        RAISE EXCEPTION 'pg_oas: codec "%" is in use: % chain to it', name,
            (SELECT pg_catalog.string_agg(c.name, ', ' ORDER BY c.name) FROM oas.codec c
             WHERE c.chains_to OPERATOR(pg_catalog.=) oas_codec_drop.name)
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'drop the codecs that chain to it first';
    END IF;
    DELETE FROM oas.codec c WHERE c.name OPERATOR(pg_catalog.=) oas_codec_drop.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pg_oas: codec "%" is not registered', name
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM oas._sync_table(t.table_oid)
    FROM (SELECT DISTINCT c.table_oid FROM oas.tracked_columns c
          WHERE c.codec OPERATOR(pg_catalog.=) oas_codec_drop.name) t;
END
$fn$;

-- A value for a column of the registered codec `codec` (`<codec@store>`): its encode functions
-- run, outermost first, as the calling role; the result goes to its chain's end as oas_blob(),
-- oas_attach(), oas_hash(), oas_npy() or oas_object() take it; the row trigger stores it where
-- DataJoint would. Use it in INSERT or UPDATE. A NULL value stays NULL.
CREATE FUNCTION oas.oas_encode(codec text, value anyelement) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    expr text := '$1';
    c text := codec;
    k oas.codec;
    end_codec text;
    feeds regtype;
    result jsonb;
BEGIN
    IF value IS NULL THEN
        RETURN NULL;
    END IF;
    end_codec := oas._codec_end(codec);
    IF end_codec IS NULL OR end_codec = codec THEN
        RAISE EXCEPTION 'pg_oas: codec "%" is not a registered custom codec', codec
            USING ERRCODE = 'undefined_object',
                  HINT = CASE WHEN end_codec = codec
                              THEN pg_catalog.format('make <%s@> values with oas_%s()', codec, codec)
                              ELSE 'register it with SELECT oas.oas_codec_register(name, chains_to, encode, decode); SELECT * FROM oas.codec lists them' END;
    END IF;
    IF end_codec = 'filepath' THEN
        RAISE EXCEPTION 'pg_oas: codec "%" chains to <filepath>: its values are registered, not encoded', codec
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'register the file with oas_filepath(path, store)';
    END IF;
    LOOP
        SELECT * INTO k FROM oas.codec x WHERE x.name OPERATOR(pg_catalog.=) c;
        EXIT WHEN NOT FOUND;
        IF k.encode IS NULL THEN
            RAISE EXCEPTION 'pg_oas: codec "%" has no encode function', c
                USING ERRCODE = 'feature_not_supported';
        END IF;
        expr := oas._codec_call(k.encode, expr);
        SELECT p.prorettype INTO feeds FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) k.encode;
        c := k.chains_to;
    END LOOP;
    -- json keeps its keys in the order written (as Python's dicts do), so it goes to oas_blob as
    -- text; jsonb puts them in its own order (the same value, other bytes, another hash).
    IF feeds = 'json'::regtype THEN
        expr := '(' || expr || ')::text';
    END IF;
    expr := CASE end_codec
        WHEN 'attach' THEN pg_catalog.format(
            '(SELECT oas.oas_attach(a.filename, a.contents) FROM oas.oas_attach_unpack(%s) a)', expr)
        ELSE pg_catalog.format('oas.oas_%s(%s)', end_codec, expr) END;
    EXECUTE pg_catalog.format('SELECT oas._pending_codec(%s, $2)', expr) INTO result USING value, codec;
    RETURN result;
END
$fn$;

-- The value of a column of the registered codec `codec` (`<codec@store>`): its chain's end is
-- read (a <blob@> object unpacked, an <attach@>/<hash@> object's bytes, or the reference itself
-- for <npy@>, <object@> and <filepath@>), then the decode functions run, innermost first, as the
-- calling role. The result as jsonb.
CREATE FUNCTION oas.oas_decode(codec text, stored jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN oas._decode(codec, stored, false);
END
$fn$;

-- The value of an in-table column of the registered codec `codec` (`<codec>`, bytea): a chain
-- ending at <blob> is unpacked, one ending at <attach> is given as its bytes, then the decode
-- functions run, innermost first, as the calling role.
CREATE FUNCTION oas.oas_decode(codec text, stored bytea) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN oas._decode(codec, stored, true);
END
$fn$;

CREATE FUNCTION oas._decode(codec text, stored anyelement, in_table boolean) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    end_codec text := oas._codec_end(codec);
    chain oas.codec[] := '{}';
    k oas.codec;
    c text := codec;
    expr text;
    result jsonb;
    i int;
BEGIN
    IF stored IS NULL THEN
        RETURN NULL;
    END IF;
    IF end_codec IS NULL OR end_codec = codec THEN
        RAISE EXCEPTION 'pg_oas: codec "%" is not a registered custom codec', codec
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT * FROM oas.codec lists them; built-in values are read with oas_blob_get, oas_hash_get, oas_attach_get, oas_read';
    END IF;
    LOOP
        SELECT * INTO k FROM oas.codec x WHERE x.name OPERATOR(pg_catalog.=) c;
        EXIT WHEN NOT FOUND;
        IF k.decode IS NULL THEN
            RAISE EXCEPTION 'pg_oas: codec "%" has no decode function', c
                USING ERRCODE = 'feature_not_supported';
        END IF;
        chain := chain || k;
        c := k.chains_to;
    END LOOP;
    IF in_table THEN
        expr := CASE end_codec WHEN 'blob' THEN 'oas.oas_blob_unpack($1)' WHEN 'attach' THEN '$1' END;
        IF expr IS NULL THEN
            RAISE EXCEPTION 'pg_oas: codec "%" chains to <%>, whose values are references (jsonb), not bytes', codec, end_codec
                USING ERRCODE = 'datatype_mismatch';
        END IF;
    ELSE
        expr := CASE end_codec WHEN 'blob' THEN 'oas.oas_blob_get($1)'
                               WHEN 'attach' THEN 'oas.oas_hash_get($1)'
                               WHEN 'hash' THEN 'oas.oas_hash_get($1)'
                               ELSE '$1' END;
    END IF;
    FOR i IN REVERSE pg_catalog.cardinality(chain) .. 1 LOOP
        expr := oas._codec_call((chain[i]).decode, expr);
    END LOOP;
    EXECUTE pg_catalog.format('SELECT pg_catalog.to_jsonb(%s)', expr) INTO result USING stored;
    RETURN result;
END
$fn$;

COMMENT ON FUNCTION oas.oas_codec_register(text, text, regprocedure, regprocedure) IS
    'pg_oas: register a custom codec (oas_admin): its name, what it chains to (blob, attach, hash, npy, object, filepath or a registered codec), and its encode and decode functions (owned by you)';
COMMENT ON FUNCTION oas.oas_codec_drop(text) IS
    'pg_oas: drop a registered custom codec (oas_admin); refused while another codec chains to it';
COMMENT ON FUNCTION oas.oas_encode(text, anyelement) IS
    'pg_oas: a pending value for a column of a registered custom codec: its encode functions run as you, the row trigger stores the result where DataJoint would';
COMMENT ON FUNCTION oas.oas_decode(text, jsonb) IS
    'pg_oas: the value of a column of a registered custom codec: the end of its chain read, then its decode functions, as jsonb';
COMMENT ON FUNCTION oas.oas_decode(text, bytea) IS
    'pg_oas: the value of an in-table column of a registered custom codec (a <blob> or <attach> chain), decoded, as jsonb';

-- Columns classified by the end of their codec's chain (sql/tracking.sql).
CREATE OR REPLACE VIEW oas.tracked_columns AS
SELECT n.nspname::text AS schema_name,
       c.relname::text AS table_name,
       a.attname::text AS column_name,
       c.oid::regclass AS table_oid,
       m.codec,
       m.store,
       coalesce(m.store, (SELECT s.name FROM oas.store s WHERE s.is_default)) AS resolved_store,
       CASE e.chain_end WHEN 'blob' THEN 'hash' WHEN 'attach' THEN 'hash' WHEN 'hash' THEN 'hash'
                        WHEN 'npy' THEN 'schema' WHEN 'object' THEN 'schema'
                        WHEN 'filepath' THEN 'filepath' ELSE m.addressing END AS addressing,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS data_type,
       m.user_comment,
       e.chain_end
FROM pg_catalog.pg_description d
JOIN pg_catalog.pg_class c ON d.classoid = 'pg_catalog.pg_class'::regclass AND d.objoid = c.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
CROSS JOIN LATERAL oas.oas_parse_marker(d.description) m
CROSS JOIN LATERAL (SELECT oas._codec_end(m.codec) AS chain_end) e
JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
WHERE d.objsubid > 0
  AND c.relkind IN ('r', 'p')
  AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  -- References are jsonb (or a domain over it). Nothing else is ever evaluated as one: the
  -- ledger's triggers run as the extension's owner, and a cast from another type is user code.
  AND (a.atttypid = 'pg_catalog.jsonb'::pg_catalog.regtype
       OR (ty.typtype = 'd' AND ty.typbasetype = 'pg_catalog.jsonb'::pg_catalog.regtype))
  -- Other sessions' temporary tables cannot be read.
  AND (c.relpersistence <> 't' OR c.relnamespace = pg_catalog.pg_my_temp_schema());

-- The ledger's trigger checks blobs; _sync_table gives blob columns kind 'b' and every column
-- that takes pending values the row trigger (sql/ledger.sql).
CREATE OR REPLACE FUNCTION oas._track_refs() RETURNS trigger
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
GRANT EXECUTE ON FUNCTION oas._sync_table(oid) TO oas_admin;
REVOKE ALL ON FUNCTION oas._check_blobs(text[], text[], text) FROM PUBLIC;
SELECT oas._sync_table(t.table_oid) FROM (SELECT DISTINCT c.table_oid FROM oas.tracked_columns c) t;

-- Many hash-addressed references read at once, in order (src/api/hash.rs).
CREATE  FUNCTION "oas_hash_get_many"(
	"refs" jsonb[] /* Vec < Option < JsonB > > */
) RETURNS TABLE (
	"ordinality" bigint,  /* i64 */
	"data" bytea  /* Option < Vec < u8 > > */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_hash_get_many_wrapper';

-- Slices by a cost model (#12): oas_npy_slice_stats also tells the requests, the plan of the
-- fetch, the gap read through and the time the store's cost model expects.
DROP FUNCTION oas.oas_npy_slice_stats(jsonb, text);
CREATE  FUNCTION "oas_npy_slice_stats"(
	"reference" jsonb, /* JsonB */
	"slice" TEXT DEFAULT '' /* & str */
) RETURNS TABLE (
	"bytes_needed" bigint,  /* i64 */
	"bytes_fetched" bigint,  /* i64 */
	"ranges" bigint,  /* i64 */
	"header_bytes" bigint,  /* i64 */
	"shape" bigint[],  /* Vec < i64 > */
	"requests" bigint,  /* i64 */
	"plan" TEXT,  /* String */
	"merge_gap" bigint,  /* i64 */
	"estimated_ms" double precision  /* f64 */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_npy_slice_stats_wrapper';

-- Backup and restore (#13): oas_ledger_rebuild() makes the ledger say what the rows reference
-- (REBUILD rows), and a restore gets exactly the triggers its dump holds (sql/ledger.sql).
ALTER TABLE oas.ref_log DROP CONSTRAINT ref_log_op_check;
ALTER TABLE oas.ref_log ADD CONSTRAINT ref_log_op_check CHECK (op IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'DROP',
                                            'ATTACH', 'DETACH', 'COMPACT', 'REBUILD'));
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
CREATE OR REPLACE FUNCTION oas._on_ddl_end() RETURNS event_trigger
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
DROP EVENT TRIGGER oas_track_ddl;
CREATE EVENT TRIGGER oas_track_ddl ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'COMMENT', 'CREATE TABLE AS', 'SELECT INTO',
                 'CREATE TRIGGER')
    EXECUTE FUNCTION oas._on_ddl_end();
CREATE  FUNCTION "oas_ledger_rebuild"() RETURNS TABLE (
	"schema_name" TEXT,  /* String */
	"table_name" TEXT,  /* String */
	"column_name" TEXT,  /* String */
	"store" TEXT,  /* String */
	"path" TEXT,  /* String */
	"delta" bigint  /* i64 */
)
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_ledger_rebuild_wrapper';

-- Read-only stores (src/api/store.rs, src/catalog.rs): an archive refuses every write into it,
-- and the collector moves and deletes nothing in it.
ALTER TABLE oas.store ADD COLUMN read_only boolean NOT NULL DEFAULT false;
-- Compressed stores (src/api/store.rs, oas_core's compress.rs): hash-addressed objects written
-- into a marked store are kept zstd-compressed.
ALTER TABLE oas.store ADD COLUMN compression text NOT NULL DEFAULT 'none'
    CHECK (compression ~ '^(none|zstd:([1-9]|1[0-9]))$');
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
       s.require_references,
       s.read_only,
       s.compression
FROM oas.store s
LEFT JOIN oas.store_secret sec ON sec.store = s.name;
CREATE FUNCTION oas."oas_store_read_only"(
	"store" TEXT, /* & str */
	"read_only" bool /* bool */
) RETURNS bool /* bool */
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_store_read_only_wrapper';
CREATE FUNCTION oas."oas_store_compression"(
	"store" TEXT, /* & str */
	"method" TEXT /* & str */
) RETURNS TEXT /* String */
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'oas_store_compression_wrapper';

-- Copying a reference's objects into another store, for moves between tiers (src/api/copy.rs).
CREATE FUNCTION oas."_copy_to_store"(
	"reference" jsonb, /* JsonB */
	"store" TEXT /* & str */
) RETURNS jsonb /* JsonB */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'copy_to_store_wrapper';

-- Jobs (#14): migrating a column into object storage and back, moving objects between stores
-- (src/api/job.rs, src/api/migrate.rs, src/api/moves.rs, sql/jobs.sql).
CREATE FUNCTION oas."_job_step"(
	"job" bigint /* i64 */
) RETURNS jsonb /* JsonB */
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'job_step_wrapper';
CREATE FUNCTION oas."_job_top_level"(
	"what" TEXT /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'job_top_level_wrapper';
CREATE FUNCTION oas."_migrate_start"(
	"table" oid, /* Option < pg_sys :: Oid > */
	"column" TEXT, /* Option < & str > */
	"codec" TEXT, /* Option < & str > */
	"batch_rows" INT, /* Option < i32 > */
	"drop_old" bool, /* Option < bool > */
	"max_bytes" bigint /* Option < i64 > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'migrate_start_wrapper';
CREATE FUNCTION oas."_move_start"(
	"to_store" TEXT, /* Option < & str > */
	"from_store" TEXT, /* Option < & str > */
	"table" oid, /* Option < pg_sys :: Oid > */
	"column" TEXT, /* Option < & str > */
	"batch_rows" INT /* Option < i32 > */
) RETURNS bigint[] /* Vec < i64 > */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'move_start_wrapper';
CREATE FUNCTION oas."_pending_stored"(
	"data" bytea, /* Option < & [u8] > */
	"codec" TEXT, /* & str */
	"row" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS jsonb /* Option < JsonB > */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pending_stored_wrapper';

-- Jobs that rewrite one column of one table in keyset batches, one transaction per batch:
-- oas_migrate_column and oas_move (README "Migrating a column"). The engine is in Rust
-- (src/api/job.rs); here the catalog of jobs and the procedures that commit after each batch.

-- One row per job. Everyone reads their own jobs; only pg_oas writes them (as the extension's
-- owner, for the role that started the job: src/api/job.rs).
CREATE TABLE oas.job (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('migrate', 'move')),
    table_oid oid NOT NULL,
    column_name text NOT NULL,
    -- The column the batches write: the migration's new column, or the moved column itself.
    work_column text NOT NULL,
    args jsonb NOT NULL,
    batch_rows integer NOT NULL,
    -- The primary key of the last row done (its values as text), NULL before the first batch.
    position text[],
    rows_done bigint NOT NULL DEFAULT 0,
    bytes_done bigint NOT NULL DEFAULT 0,
    rows_total bigint NOT NULL DEFAULT 0,
    state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done')),
    role name NOT NULL,
    started timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    resumed timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    bytes_resumed bigint NOT NULL DEFAULT 0,
    updated timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished timestamptz
);
-- A column has one running job at a time.
CREATE UNIQUE INDEX job_running ON oas.job (table_oid, column_name) WHERE state = 'running';
ALTER TABLE oas.job ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_own ON oas.job FOR SELECT USING (role OPERATOR(pg_catalog.=) CURRENT_USER);
REVOKE ALL ON oas.job FROM PUBLIC;
GRANT SELECT ON oas.job TO PUBLIC;

-- The row trigger a migration puts on its table while it runs: a row another session inserts,
-- or whose old column it updates, gets an empty new column, so the migration (re)writes it.
CREATE FUNCTION oas._job_stale() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    NEW := pg_catalog.jsonb_populate_record(NEW, pg_catalog.jsonb_build_object(TG_ARGV[0], NULL));
    RETURN NEW;
END
$fn$;

-- A procedure that commits runs as its caller (a SECURITY DEFINER procedure, or one with SET
-- clauses, cannot COMMIT): every name below is schema-qualified.
-- The batches of job `job` until it is done: one step, COMMIT, its progress as a NOTICE.
CREATE PROCEDURE oas._job_run(job bigint)
LANGUAGE plpgsql
AS $proc$
DECLARE
    step jsonb;
BEGIN
    LOOP
        step := oas._job_step(job);
        COMMIT;
        RAISE NOTICE '%', pg_catalog.jsonb_extract_path_text(step, 'progress');
        EXIT WHEN pg_catalog.jsonb_extract_path_text(step, 'done') OPERATOR(pg_catalog.=) 'true';
    END LOOP;
END
$proc$;

CREATE PROCEDURE oas.oas_migrate_column("table" regclass, "column" text, codec text,
                                        batch_rows integer DEFAULT 100,
                                        drop_old boolean DEFAULT false,
                                        max_bytes bigint DEFAULT NULL)
LANGUAGE plpgsql
AS $proc$
DECLARE
    job bigint;
BEGIN
    PERFORM oas._job_top_level('oas_migrate_column');
    job := oas._migrate_start("table", "column", codec, batch_rows, drop_old, max_bytes);
    COMMIT;
    CALL oas._job_run(job);
END
$proc$;
COMMENT ON PROCEDURE oas.oas_migrate_column(regclass, text, text, integer, boolean, bigint) IS
    'pg_oas: migrate a bytea column (<blob>, <attach>, plain bytes) into object storage (codec ''blob@store'', ''attach@store'', ''hash@store''), or back (''blob'', ''attach'', ''bytes'', values up to max_bytes), in batches that commit; CALL it again to resume';

CREATE PROCEDURE oas.oas_move(to_store text, from_store text DEFAULT NULL,
                              "table" regclass DEFAULT NULL, "column" text DEFAULT NULL,
                              batch_rows integer DEFAULT 100)
LANGUAGE plpgsql
AS $proc$
DECLARE
    jobs bigint[];
    job bigint;
BEGIN
    PERFORM oas._job_top_level('oas_move');
    jobs := oas._move_start(to_store, from_store, "table", "column", batch_rows);
    COMMIT;
    FOREACH job IN ARRAY jobs LOOP
        CALL oas._job_run(job);
    END LOOP;
END
$proc$;
COMMENT ON PROCEDURE oas.oas_move(text, text, regclass, text, integer) IS
    'pg_oas: move the objects of tracked columns (of a table, one column, or all) to store to_store, from from_store (default: any other), in batches that commit; CALL it again to resume';

-- Last, as in a fresh install: every function made from Rust gets its doc comment.
SELECT oas._comment_functions();
