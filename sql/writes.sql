-- The write path in SQL: the row trigger that stores values made by oas_npy(), oas_object() and
-- oas_object_folder() at their row's key-based path, the grants of functions that hand out more
-- than a reference (folder listings, presigned URLs), and SQL wrappers of the npy functions. Runs
-- last: it uses functions pgrx generates.

-- The row trigger on tables with <npy@> or <object@> columns (arguments: those columns): a value
-- made by oas_npy(), oas_object() or oas_object_folder() is stored at the path DataJoint builds
-- from this row's primary key, and the row keeps DataJoint's reference instead.
CREATE FUNCTION oas._fill_values() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    i int;
    row_json jsonb;
    v jsonb;
    filled jsonb := '{}';
BEGIN
    row_json := to_jsonb(NEW);
    FOR i IN 0 .. TG_NARGS - 1 LOOP
        v := row_json -> TG_ARGV[i];
        IF jsonb_typeof(v) = 'object' AND v ? 'oas_pending' THEN
            filled := filled || jsonb_build_object(TG_ARGV[i],
                                                   oas._write_pending(TG_RELID, TG_ARGV[i], row_json, v));
        END IF;
    END LOOP;
    IF filled <> '{}'::jsonb THEN
        NEW := jsonb_populate_record(NEW, filled);
    END IF;
    RETURN NEW;
END
$fn$;

-- Listing a folder shows paths under any prefix of a store: like presigned URLs, deliberate grants only.
REVOKE ALL ON FUNCTION oas.oas_object_list(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION oas.oas_object_list(jsonb) TO oas_admin;

-- A presigned URL reads an object with no later check by PostgreSQL (and an S3 URL shows the
-- store's access key id): only oas_admin may make them unless granted deliberately.
REVOKE ALL ON FUNCTION oas.oas_presign_url(jsonb, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION oas.oas_presign_url(jsonb, interval) TO oas_admin;
