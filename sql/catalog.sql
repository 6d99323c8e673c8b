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
    updated_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE oas.store IS 'pg_oas object stores (DataJoint store specs, secrets removed)';
CREATE UNIQUE INDEX store_one_default ON oas.store (is_default) WHERE is_default;
CREATE UNIQUE INDEX store_one_filepath_default ON oas.store (is_filepath_default) WHERE is_filepath_default;

CREATE TABLE oas.store_secret (
    store   text PRIMARY KEY REFERENCES oas.store (name) ON DELETE CASCADE ON UPDATE CASCADE,
    secrets jsonb NOT NULL CHECK (jsonb_typeof(secrets) = 'object')
);
COMMENT ON TABLE oas.store_secret IS 'pg_oas store credentials; never exposed by views or messages';

-- Store configuration (secrets included) belongs in a dump of the database.
SELECT pg_catalog.pg_extension_config_dump('oas.store', '');
SELECT pg_catalog.pg_extension_config_dump('oas.store_secret', '');
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
       s.updated_at
FROM oas.store s
LEFT JOIN oas.store_secret sec ON sec.store = s.name;
COMMENT ON VIEW oas.stores IS 'pg_oas object stores; credentials are never shown';

REVOKE ALL ON oas.store, oas.store_secret, oas.store_version_seq FROM PUBLIC;
GRANT USAGE ON SCHEMA oas TO PUBLIC;
GRANT SELECT ON oas.store TO PUBLIC;
-- The view joins store_secret only to say whether credentials exist; it runs with its owner's rights.
GRANT SELECT ON oas.stores TO PUBLIC;
-- Administrators read the catalog, secrets included; they change it only through
-- oas_store_create/alter/drop/set_default/import, which check the privileges a store needs (a file
-- store needs the server-file roles) and then write as the extension's owner.
GRANT SELECT ON oas.store, oas.store_secret TO oas_admin;
