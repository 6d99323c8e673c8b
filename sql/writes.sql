-- The write path in SQL: the grants of functions that hand out more than a reference (folder
-- listings, presigned URLs). The row trigger that stores pending values, oas._fill_values, is
-- written in Rust (src/api/write.rs). Runs last: it uses functions pgrx generates.

-- Listing a folder shows paths under any prefix of a store: like presigned URLs, deliberate grants only.
REVOKE ALL ON FUNCTION oas.oas_object_list(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION oas.oas_object_list(jsonb) TO oas_admin;

-- A presigned URL reads an object with no later check by PostgreSQL (and an S3 URL shows the
-- store's access key id): only oas_admin may make them unless granted deliberately.
REVOKE ALL ON FUNCTION oas.oas_presign_url(jsonb, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION oas.oas_presign_url(jsonb, interval) TO oas_admin;
