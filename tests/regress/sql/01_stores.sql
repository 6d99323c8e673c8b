-- Store configuration: DataJoint's spec format, validation, defaults, secrets, privileges.
\getenv store_dir OAS_REGRESS_STORE
SELECT oas.oas_store_create('local', jsonb_build_object('protocol', 'file', 'location', :'store_dir'), true);
-- A DataJoint S3 spec, exactly as in datajoint.json (no request is made to create it).
SELECT oas.oas_store_create('lab_s3', '{"protocol": "s3", "endpoint": "s3.example.org", "bucket": "lab",
  "location": "proj", "secure": true, "subfolding": [2, 2], "partition_pattern": "{subject_id}",
  "token_length": 8, "hash_prefix": "_hash", "schema_prefix": "_schema", "filepath_prefix": null,
  "access_key": "AKIAREGRESS", "secret_key": "regress-secret-key"}');
SELECT name, protocol, is_default, has_credentials, spec - 'location' AS spec,
       spec->>'location' IN ('proj', :'store_dir') AS location_kept
FROM oas.stores ORDER BY name;
-- Secrets are in neither the view nor the public table.
SELECT count(*) AS leaks FROM oas.stores WHERE spec::text LIKE '%regress-secret%' OR spec ? 'secret_key';
SELECT count(*) AS leaks FROM oas.store WHERE spec::text LIKE '%regress-secret%';
SELECT store, secrets ? 'secret_key' AS has_secret FROM oas.store_secret;

-- Bad specs: each with a precise message.
SELECT try($$SELECT oas.oas_store_create('x', '{"protocol": "file", "location": "/tmp", "project_name": "p"}')$$);
SELECT try($$SELECT oas.oas_store_create('x', '{"protocol": "s3", "location": "p"}')$$);
SELECT try($$SELECT oas.oas_store_create('x', '{"protocol": "s3", "endpoint": "e", "bucket": "b", "location": "", "access_key": "only-half"}')$$);
SELECT try($$SELECT oas.oas_store_create('x', '{"protocol": "ftp", "location": "/tmp"}')$$);
SELECT try($$SELECT oas.oas_store_create('x', '{"protocol": "file", "location": "relative/dir"}')$$);
SELECT try($$SELECT oas.oas_store_create('x', '{"protocol": "file", "location": "/nonexistent/oas-regress"}')$$);
SELECT try($$SELECT oas.oas_store_create('x', '{"protocol": "file", "location": "/tmp", "filepath_prefix": "_hash/raw"}')$$);
SELECT try($$SELECT oas.oas_store_create('bad name', '{"protocol": "file", "location": "/tmp"}')$$);
SELECT try($$SELECT oas.oas_store_create('x', '"just a string"')$$);
SELECT try($$SELECT oas.oas_store_create('local', '{"protocol": "file", "location": "/tmp"}')$$);
SELECT count(*) AS stores_after_bad_input FROM oas.store;

-- Alter replaces the spec (and bumps the version so every backend rebuilds its client).
SELECT version AS v1 FROM oas.store WHERE name = 'lab_s3' \gset
SELECT oas.oas_store_alter('lab_s3', '{"protocol": "s3", "endpoint": "s3.example.org", "bucket": "lab2", "location": "proj"}');
SELECT spec->>'bucket' AS bucket, version > :v1 AS version_bumped, has_credentials FROM oas.stores WHERE name = 'lab_s3';
SELECT try($$SELECT oas.oas_store_alter('nope', '{"protocol": "file", "location": "/tmp"}')$$);

-- One default at a time.
SELECT oas.oas_store_set_default('lab_s3');
SELECT name FROM oas.store WHERE is_default;
SELECT oas.oas_store_set_default('local');
SELECT try($$SELECT oas.oas_store_set_default('nope')$$);

-- Import DataJoint's config as-is: a whole datajoint.json, stores block with defaults.
SELECT * FROM oas.oas_store_import('{"database.host": "db", "stores": {"default": "dj_main", "filepath_default": "dj_raw",
  "dj_main": {"protocol": "s3", "endpoint": "s3.example.org", "bucket": "b", "location": "dj"},
  "dj_raw": {"protocol": "gcs", "bucket": "raw", "location": "", "token": "anon", "project": "p"}}}') ORDER BY 1, 2;
SELECT name, is_default, is_filepath_default FROM oas.stores ORDER BY name;
SELECT oas.oas_store_set_default('local');

-- Creating a store inside a transaction that rolls back leaves nothing behind.
BEGIN;
SELECT oas.oas_store_create('temp_store', '{"protocol": "s3", "endpoint": "e", "bucket": "b", "location": ""}');
ROLLBACK;
SELECT count(*) AS temp_store_rows FROM oas.store WHERE name = 'temp_store';

-- Drop.
SELECT oas.oas_store_drop('dj_raw');
SELECT oas.oas_store_drop('dj_raw', if_exists => true);
SELECT try($$SELECT oas.oas_store_drop('dj_raw')$$);

-- Privileges: ordinary roles may read the public catalog but not secrets, and may not manage stores.
CREATE ROLE oas_regress_user;
CREATE ROLE oas_regress_admin IN ROLE oas_admin;
SET ROLE oas_regress_user;
SELECT count(*) > 0 AS can_see_stores FROM oas.stores;
SELECT try($$SELECT * FROM oas.store_secret$$);
SELECT try($$SELECT oas.oas_store_create('u', '{"protocol": "s3", "endpoint": "e", "bucket": "b", "location": ""}')$$);
SELECT try($$SELECT oas.oas_store_drop('lab_s3')$$);
SELECT try($$UPDATE oas.store SET spec = '{}'$$);
RESET ROLE;
-- oas_admin manages cloud stores; a file store also needs the server-file roles.
SET ROLE oas_regress_admin;
SELECT oas.oas_store_create('admin_s3', '{"protocol": "s3", "endpoint": "e", "bucket": "b", "location": ""}');
SELECT try(format($$SELECT oas.oas_store_create('admin_file', '{"protocol": "file", "location": %s}')$$, to_json(:'store_dir'::text)));
SELECT oas.oas_store_drop('admin_s3');
RESET ROLE;
DROP ROLE oas_regress_user;
DROP ROLE oas_regress_admin;
