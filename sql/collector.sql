-- The collector's state, its lock stripes and the checks the ledger's trigger asks of it. The
-- collector itself is src/api/gc/; the design is in docs/gc-design.md.

-- Lock keys. Every path to a new reference (oas_hash_put, the triggers on tracked tables) holds a
-- shared transaction lock on the object's stripe, oas.lock_stripe(path); the collector moves an
-- object only while it holds that stripe exclusively. Stripes bound the locks a big statement
-- holds (at most 1024). The stripe rule, the lock classes and the timeout (oas.lock_timeout) live
-- in src/api/locks.rs.

-- Collector state.
CREATE TABLE oas.gc_run (
    run_id      bigserial PRIMARY KEY,
    store       text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    grace       interval NOT NULL,
    report      jsonb
);
COMMENT ON TABLE oas.gc_run IS 'pg_oas: one row per store per real oas_gc() run';

-- Unreferenced objects seen by a real run, with when they were first seen so.
CREATE TABLE oas.gc_candidate (
    store      text NOT NULL,
    path       text NOT NULL,
    size       bigint NOT NULL,
    mtime      timestamptz NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    PRIMARY KEY (store, path)
);
COMMENT ON TABLE oas.gc_candidate IS 'pg_oas: unreferenced objects waiting out the grace period';

-- Objects moved to `_oas/trash/{path}`; ref_path is the reference path that would own them.
CREATE TABLE oas.gc_trash (
    store      text NOT NULL,
    path       text NOT NULL,
    ref_path   text NOT NULL,
    size       bigint NOT NULL,
    run_id     bigint NOT NULL,
    trashed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store, path)
);
CREATE INDEX gc_trash_ref ON oas.gc_trash (store, ref_path);
CREATE INDEX gc_trash_run ON oas.gc_trash (run_id, store, path);
COMMENT ON TABLE oas.gc_trash IS 'pg_oas: collected objects in the trash area, restorable until purged';
SELECT pg_catalog.pg_extension_config_dump('oas.gc_trash', '');

-- Schemas this database has written objects for in each store. The collector lists only these
-- (and the schemas that exist), so a bucket shared with other databases is safe.
CREATE TABLE oas.gc_known_schema (
    store  text NOT NULL,
    schema text NOT NULL,
    PRIMARY KEY (store, schema)
);

REVOKE ALL ON oas.gc_run, oas.gc_candidate, oas.gc_trash, oas.gc_known_schema FROM PUBLIC;
-- A collector that is not a superuser is a member of oas_admin (and pg_read_all_stats). It reads
-- these tables; only the extension's owner writes them (the collector's functions switch to it
-- after their checks; the triggers are SECURITY DEFINER).
GRANT SELECT ON oas.gc_run, oas.gc_candidate, oas.gc_trash, oas.gc_known_schema TO oas_admin;

-- The collector moves an object only if it has been unreferenced since before this: the grace
-- period ago, and the start of every transaction still running that can write this database's
-- rows (one that started earlier may hold a snapshot in which a row still references it, and copy
-- that reference): this database's client backends, background workers (of this database, or of
-- none known: kept to be safe) and this database's prepared transactions. Another database's
-- transactions cannot see or write these rows and do not hold the horizon back.
CREATE FUNCTION oas._gc_horizon(grace interval) RETURNS timestamptz
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

-- May an object a new reference names sit in trash, with no record this transaction can see?
-- Yes while a collector runs (its records are not committed yet), and in transactions that do not
-- see commits made after they started.
CREATE FUNCTION oas._gc_may_hide() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT oas._gc_running()
        OR (pg_catalog.current_setting('transaction_isolation') <> 'read committed'
            AND EXISTS (SELECT 1 FROM oas.gc_run))
$$;

REVOKE ALL ON FUNCTION oas._gc_ensure_present(text, text) FROM PUBLIC;
