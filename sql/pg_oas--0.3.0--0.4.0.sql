-- pg_oas 0.3.0 -> 0.4.0 (ALTER EXTENSION pg_oas UPDATE). Each change adds its statements here,
-- with a line in this list; tests/client/test_upgrade.py checks the result equals a fresh install.
--   * oas._gc_horizon: only transactions that can write this database's rows hold it back.

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
