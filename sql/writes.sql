-- The write path in SQL: blob values of any other type, and the grants of functions that hand
-- out more than a reference (folder listings, presigned URLs). The row trigger that stores pending values, oas._fill_values, is
-- written in Rust (src/api/write.rs). Runs last: it uses functions pgrx generates.

-- Listing a folder shows paths under any prefix of a store: like presigned URLs, deliberate grants only.
REVOKE ALL ON FUNCTION oas.oas_object_list(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION oas.oas_object_list(jsonb) TO oas_admin;

-- A presigned URL reads an object with no later check by PostgreSQL (and an S3 URL shows the
-- store's access key id): only oas_admin may make them unless granted deliberately.
REVOKE ALL ON FUNCTION oas.oas_presign_url(jsonb, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION oas.oas_presign_url(jsonb, interval) TO oas_admin;

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
