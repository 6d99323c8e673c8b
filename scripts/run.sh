#!/usr/bin/env bash
# The product, locally: installs what is missing, builds and installs pg_oas (release), starts a
# PostgreSQL 15 cluster on 127.0.0.1:$OAS_DEV_PORT (25432) with database `oas`, the extension and a
# default file store `main` under .run/dev-store, runs a short demo and says how to connect.
# Rerunning keeps the cluster and its data, and builds or installs again only when the sources or
# the installed extension changed. OAS_RUN_DIR (.run) holds the cluster and the store; it may be a
# fresh empty folder (mktemp -d). Starts no object-store server. Stop it with: scripts/cluster.sh stop dev
set -euo pipefail
source "$(dirname "$0")/env.sh"
# OAS_SKIP_SETUP=1: the caller has just run setup.sh (scripts/test.sh does).
[ "${OAS_SKIP_SETUP:-0}" = 1 ] || "$ROOT/scripts/setup.sh"
install_extension
"$ROOT/scripts/cluster.sh" start dev "$DEV_PORT"
STORE="$RUN_DIR/dev-store"
install -d -o postgres -g postgres -m 750 "$STORE"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$DEV_PORT" -U postgres)
"${PSQL[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'oas'" | grep -q 1 \
  || "${PSQL[@]}" -d postgres -c "CREATE DATABASE oas"
"${PSQL[@]}" -d oas <<SQL
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_oas;
ALTER EXTENSION pg_oas UPDATE;
ALTER DATABASE oas SET search_path = "\$user", public, oas;
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM oas.store WHERE name = 'main') THEN
    PERFORM oas.oas_store_create('main', jsonb_build_object('protocol', 'file', 'location', '$STORE'), true);
  END IF;
END \$\$;
SQL
STORE=$("${PSQL[@]}" -d oas -tAc "SELECT spec->>'location' FROM oas.store WHERE name = 'main'")
log "demo"
"${PSQL[@]}" -d oas -P pager=off <<'SQL'
SET client_min_messages = warning;
\echo '-- a table whose column holds DataJoint <hash@main> references'
CREATE TABLE IF NOT EXISTS public.demo (id int PRIMARY KEY, payload jsonb);
COMMENT ON COLUMN public.demo.payload IS ':<hash@main>:demo payload';
INSERT INTO public.demo VALUES (1, oas_hash_put('hello'::bytea, 'main', 'public')),
                               (2, oas_hash_put('hello'::bytea, 'main', 'public'))
  ON CONFLICT (id) DO NOTHING;
SELECT id, payload->>'path' AS path, payload->>'size' AS size FROM public.demo ORDER BY id;
\echo '-- both rows share one object (deduplicated); reading checks size and MD5'
SELECT id, convert_from(oas_hash_get(payload), 'UTF8') AS content FROM public.demo ORDER BY id;
SELECT step, ok, detail FROM oas_store_verify('main');
SQL
# With a run folder of its own (OAS_RUN_DIR), stopping names it too.
STOP_CMD="scripts/cluster.sh stop dev"
[ "$RUN_DIR" = "$ROOT/.run" ] || STOP_CMD="OAS_RUN_DIR=$RUN_DIR $STOP_CMD"
cat <<MSG

pg_oas is running.
  connect:     psql -h 127.0.0.1 -p $DEV_PORT -U postgres oas
  store files: $STORE
  stop:        ${STOP_CMD}     (data stays; scripts/run.sh starts it again)
MSG
