-- Installing the extension creates schema oas with the catalog and the oas_* functions.
SET client_min_messages = warning;
CREATE EXTENSION pg_oas;
RESET client_min_messages;
SELECT extname, extversion, n.nspname AS schema
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE extname = 'pg_oas';
SELECT p.proname
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'oas' ORDER BY 1;
SELECT relname, relkind FROM pg_class WHERE relnamespace = 'oas'::regnamespace AND relkind IN ('r', 'v', 'S') ORDER BY 1;
-- Settings live under the reserved oas. prefix; a misspelt one is an error, not a placeholder.
SELECT name, setting, unit FROM pg_settings WHERE name LIKE 'oas.%' ORDER BY 1;
SET oas.request_timout = 10;
-- A helper for the other scripts: run a statement, show SQLSTATE, message and hint.
CREATE FUNCTION public.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
    RETURN SQLSTATE || ': ' || SQLERRM || CASE WHEN h <> '' THEN E'\nHINT: ' || h ELSE '' END;
END $$;
