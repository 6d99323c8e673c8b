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
