-- pg_oas 0.3.0 -> 0.4.0 (ALTER EXTENSION pg_oas UPDATE). Each change adds its statements here,
-- with a line in this list; tests/client/test_upgrade.py checks the result equals a fresh install.
--   * attachments: oas_attach_pack, oas_attach_unpack, oas_attach_put, oas_attach_get are new;
--   * a file of a folder object: oas_object_file_read, oas_object_file_size are new;
--   * oas._gc_horizon: only transactions that can write this database's rows hold it back.

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

-- Last, as in a fresh install: every function made from Rust gets its doc comment.
SELECT oas._comment_functions();
