-- pg_oas catalog. Installed into schema `oas` by CREATE EXTENSION (see pg_oas.control).
--
-- oas.store         one row per named store: its DataJoint spec without secrets. Readable by all.
-- oas.store_secret  the secret keys of each spec. Readable only by superusers and oas_admin.
-- oas.stores        the view to look at: never shows a secret.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'oas_admin') THEN
        CREATE ROLE oas_admin NOLOGIN;
        COMMENT ON ROLE oas_admin IS 'pg_oas: may create, alter and drop object stores and read their credentials';
    END IF;
END
$$;

-- Every configuration change takes a new version from here; backends compare versions to know
-- when a cached store client is stale (also across drop and re-create of the same name).
CREATE SEQUENCE oas.store_version_seq;

CREATE TABLE oas.store (
    name                text PRIMARY KEY
                        CONSTRAINT store_name_format CHECK (name ~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$'),
    protocol            text NOT NULL CHECK (protocol IN ('file', 's3', 'gcs', 'azure')),
    spec                jsonb NOT NULL CHECK (jsonb_typeof(spec) = 'object'),
    is_default          boolean NOT NULL DEFAULT false,
    is_filepath_default boolean NOT NULL DEFAULT false,
    version             bigint NOT NULL DEFAULT nextval('oas.store_version_seq'),
    created_at          timestamptz NOT NULL DEFAULT now(),
    created_by          name NOT NULL DEFAULT current_user,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- Reads by roles that do not administer stores need a row they may SELECT that references
    -- the object (a reference is not a capability); oas_store_require_references switches it.
    require_references  boolean NOT NULL DEFAULT true,
    -- An archive: every write into it is refused and the collector moves and deletes nothing in
    -- it; reads and verification work (oas_store_read_only switches it).
    read_only           boolean NOT NULL DEFAULT false,
    -- How hash-addressed objects written into it now are compressed: 'none' or 'zstd:N'
    -- (oas_store_compression sets it; src/compress.rs of oas_core).
    compression         text NOT NULL DEFAULT 'none'
                        CHECK (compression ~ '^(none|zstd:([1-9]|1[0-9]))$')
);
COMMENT ON TABLE oas.store IS 'pg_oas object stores (DataJoint store specs, secrets removed)';
CREATE UNIQUE INDEX store_one_default ON oas.store (is_default) WHERE is_default;
CREATE UNIQUE INDEX store_one_filepath_default ON oas.store (is_filepath_default) WHERE is_filepath_default;

CREATE TABLE oas.store_secret (
    store   text PRIMARY KEY REFERENCES oas.store (name) ON DELETE CASCADE ON UPDATE CASCADE,
    secrets jsonb NOT NULL CHECK (jsonb_typeof(secrets) = 'object')
);
COMMENT ON TABLE oas.store_secret IS 'pg_oas store credentials; never exposed by views or messages';

-- Who may use each store's objects: read (any oas_* function that reads), write (puts, pending
-- values, uploads), admin (both, and granting them). grantee 0 ('-') is PUBLIC. Superusers and
-- oas_admin members need no grant. A new store grants read and write to PUBLIC, as every store
-- behaved before 0.2.0; revoke those for a store only some roles may use.
CREATE TABLE oas.store_grant (
    store      text NOT NULL REFERENCES oas.store (name) ON DELETE CASCADE ON UPDATE CASCADE,
    grantee    regrole NOT NULL,
    privilege  text NOT NULL CHECK (privilege IN ('read', 'write', 'admin')),
    granted_by name NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store, grantee, privilege)
);
COMMENT ON TABLE oas.store_grant IS 'pg_oas per-store privileges (read, write, admin); change them with oas_store_grant/oas_store_revoke';

CREATE VIEW oas.store_privileges AS
SELECT g.store,
       CASE WHEN g.grantee::oid = 0 THEN 'PUBLIC' ELSE g.grantee::text END AS grantee,
       g.privilege,
       g.granted_by,
       g.granted_at
FROM oas.store_grant g;
COMMENT ON VIEW oas.store_privileges IS 'pg_oas: who may read, write or administer each store''s objects';

-- Store configuration (secrets included) belongs in a dump of the database.
SELECT pg_catalog.pg_extension_config_dump('oas.store', '');
SELECT pg_catalog.pg_extension_config_dump('oas.store_secret', '');
SELECT pg_catalog.pg_extension_config_dump('oas.store_grant', '');
SELECT pg_catalog.pg_extension_config_dump('oas.store_version_seq', '');

CREATE VIEW oas.stores AS
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
COMMENT ON VIEW oas.stores IS 'pg_oas object stores; credentials are never shown';

REVOKE ALL ON oas.store, oas.store_secret, oas.store_version_seq, oas.store_grant FROM PUBLIC;
GRANT USAGE ON SCHEMA oas TO PUBLIC;
GRANT SELECT ON oas.store, oas.store_grant, oas.store_privileges TO PUBLIC;
-- The view joins store_secret only to say whether credentials exist; it runs with its owner's rights.
GRANT SELECT ON oas.stores TO PUBLIC;
-- Administrators read the catalog, secrets included; they change it only through
-- oas_store_create/alter/drop/set_default/import, which check the privileges a store needs (a file
-- store needs the server-file roles) and then write as the extension's owner.
GRANT SELECT ON oas.store, oas.store_secret TO oas_admin;
