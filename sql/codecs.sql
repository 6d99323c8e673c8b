-- Custom codecs registered in SQL: a codec's name (as DataJoint's column comments write it,
-- `:<graph@main>:`), what it chains to, and the SQL functions (in any language) that encode and
-- decode its values. `oas_encode(codec, value)` runs the encode functions, outermost first, and
-- hands the result to the chain's end (`oas_blob`, `oas_hash`, `oas_npy`, ...): the row trigger
-- stores it where DataJoint would. `oas_decode(codec, stored)` reads the end and runs the decode
-- functions, innermost first. Tracking and the collector classify a column by the built-in
-- codec its chain ends at (`oas._codec_end`, used by `oas.tracked_columns`).
--
-- The codec's functions run as the role that calls oas_encode/oas_decode, never with raised
-- privileges. Only members of oas_admin register codecs, and only with functions whose owner
-- they are (or are a member of) and that an administrator owns; a function runs only while an
-- administrator owns it (oas._codec_call). So nobody else can plant code that others run by
-- naming a codec, or replace a registered function's body.

CREATE TABLE oas.codec (
    name          text PRIMARY KEY
                  CONSTRAINT codec_name_format CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]*$')
                  CONSTRAINT codec_not_built_in
                      CHECK (name <> ALL (ARRAY['blob', 'attach', 'hash', 'npy', 'object', 'filepath'])),
    chains_to     text NOT NULL,
    encode        regprocedure,
    decode        regprocedure,
    registered_by name NOT NULL DEFAULT current_user,
    registered_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE oas.codec IS
    'pg_oas: custom codecs registered in SQL (oas_codec_register): what each chains to, its encode and decode functions';
SELECT pg_catalog.pg_extension_config_dump('oas.codec', '');
REVOKE ALL ON oas.codec FROM PUBLIC;
GRANT SELECT ON oas.codec TO PUBLIC;
GRANT INSERT, DELETE ON oas.codec TO oas_admin;

-- The built-in codec `codec`'s chain ends at: itself for a built-in codec, NULL for a codec this
-- database does not know (a Python-only codec: tracked from its values' JSON alone).
CREATE FUNCTION oas._codec_end(codec text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
    WITH RECURSIVE chain(name, depth) AS (
        SELECT codec, 0
        UNION ALL
        SELECT c.chains_to, chain.depth OPERATOR(pg_catalog.+) 1
        FROM oas.codec c JOIN chain ON c.name OPERATOR(pg_catalog.=) chain.name
        WHERE chain.depth OPERATOR(pg_catalog.<) 32)
    SELECT chain.name FROM chain
    WHERE chain.name OPERATOR(pg_catalog.=) ANY (ARRAY['blob', 'attach', 'hash', 'npy', 'object', 'filepath'])
    LIMIT 1
$fn$;

-- The SQL text that calls `fn` on `arg` (an expression), schema-qualified, with the argument cast
-- to the function's own argument type so no other function of that name can be chosen. Every
-- role that uses a codec runs its functions, so a function runs only while an administrator (a
-- member of oas_admin) owns it and every type it takes and returns (and the types those are made
-- of: a type's owner can add casts, which the call and to_jsonb run): one given away since it
-- was registered (ALTER ... OWNER TO, REASSIGN OWNED), or whose owner left oas_admin, is refused,
-- as is one that was dropped. oas_codec_register checks a function the same way.
CREATE FUNCTION oas._codec_call(fn regprocedure, arg text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    call text;
    owner oid;
    types oid[];
    bad_type regtype;
    bad_owner regrole;
BEGIN
    SELECT pg_catalog.format('%I.%I((%s)::%s)', n.nspname, p.proname, arg,
                             pg_catalog.format_type(p.proargtypes[0], NULL)),
           p.proowner, ARRAY[p.proargtypes[0], p.prorettype]
      INTO call, owner, types
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
    WHERE p.oid OPERATOR(pg_catalog.=) fn;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pg_oas: codec function % no longer exists', fn
            USING ERRCODE = 'undefined_function',
                  HINT = 'SELECT * FROM oas.codec shows the codec; drop it and register it again';
    END IF;
    IF NOT pg_catalog.pg_has_role(owner, 'oas_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'pg_oas: codec function % is owned by %, who is not a member of oas_admin: it is not run', fn, owner::regrole
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'every role that uses a codec runs its functions: only functions an administrator owns run';
    END IF;
    -- The types, and what they are made of: a domain's base type, an array's element type, a
    -- composite type's attributes, a range's subtype.
    WITH RECURSIVE used(t) AS (
        SELECT u.t FROM pg_catalog.unnest(types) u(t)
        UNION
        SELECT x.t FROM used JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) used.t
        CROSS JOIN LATERAL (
            SELECT ty.typbasetype
            UNION ALL SELECT ty.typelem
            UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid OPERATOR(pg_catalog.=) ty.typrelid AND a.attnum OPERATOR(pg_catalog.>) 0
            UNION ALL SELECT r.rngsubtype FROM pg_catalog.pg_range r
                      WHERE r.rngtypid OPERATOR(pg_catalog.=) ty.oid OR r.rngmultitypid OPERATOR(pg_catalog.=) ty.oid
        ) x(t)
        WHERE x.t OPERATOR(pg_catalog.<>) 0)
    SELECT ty.oid, ty.typowner INTO bad_type, bad_owner
    FROM used JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) used.t
    WHERE NOT pg_catalog.pg_has_role(ty.typowner, 'oas_admin', 'MEMBER')
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'pg_oas: codec function % uses type %, owned by %, who is not a member of oas_admin: it is not run', fn, bad_type, bad_owner
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'a type''s owner can add casts that run wherever its values are converted: codec functions take and return built-in types or types an administrator owns';
    END IF;
    RETURN call;
END
$fn$;

-- Register a custom codec: `name` as DataJoint's column comments write it, `chains_to` a
-- built-in codec ('blob', 'attach', 'hash', 'npy', 'object', 'filepath') or a registered one,
-- `encode` a function of one argument whose result the chain's next codec takes, `decode` a
-- function of one argument of what the next codec gives: for 'blob' jsonb (the unpacked value);
-- for 'attach' and 'hash' bytea (the object's bytes); for 'npy', 'object' and 'filepath' jsonb
-- (the reference); for a registered codec what its decode returns. Either may be NULL.
CREATE FUNCTION oas.oas_codec_register(name text, chains_to text,
                                       encode regprocedure DEFAULT NULL,
                                       decode regprocedure DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    end_codec text;
    next oas.codec;
    fn regprocedure;
    proc pg_catalog.pg_proc;
    arg_type regtype;
    ret_type regtype;
    takes regtype;
BEGIN
    IF NOT pg_catalog.pg_has_role('oas_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'pg_oas: permission denied to register codec "%"', name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'only members of oas_admin register codecs';
    END IF;
    IF name IS NULL OR chains_to IS NULL THEN
        RAISE EXCEPTION 'pg_oas: a codec needs a name and what it chains to'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF EXISTS (SELECT 1 FROM oas.codec c WHERE c.name OPERATOR(pg_catalog.=) oas_codec_register.name) THEN
        RAISE EXCEPTION 'pg_oas: codec "%" is already registered', name
            USING ERRCODE = 'duplicate_object',
                  HINT = pg_catalog.format('drop it first with SELECT oas.oas_codec_drop(%L)', name);
    END IF;
    end_codec := oas._codec_end(oas_codec_register.chains_to);
    IF end_codec IS NULL THEN
        RAISE EXCEPTION 'pg_oas: codec "%" chains to "%", which is neither a built-in codec nor a registered one', name, chains_to
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'chain to blob, attach, hash, npy, object or filepath, or register the inner codec first';
    END IF;
    SELECT * INTO next FROM oas.codec c WHERE c.name OPERATOR(pg_catalog.=) oas_codec_register.chains_to;

    FOREACH fn IN ARRAY ARRAY[encode, decode] LOOP
        CONTINUE WHEN fn IS NULL;
        SELECT * INTO proc FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) fn;
        IF NOT FOUND OR proc.prokind <> 'f' THEN
            RAISE EXCEPTION 'pg_oas: % is not a function', fn
                USING ERRCODE = CASE WHEN FOUND THEN 'wrong_object_type' ELSE 'undefined_function' END;
        END IF;
        IF proc.pronargs <> 1 THEN
            RAISE EXCEPTION 'pg_oas: % must take exactly one argument', fn
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF proc.pronamespace = pg_catalog.pg_my_temp_schema() OR pg_catalog.pg_is_other_temp_schema(proc.pronamespace) THEN
            RAISE EXCEPTION 'pg_oas: % is a temporary function: it goes with its session', fn
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- A superuser is a member of every role, so this check alone would let one register a
        -- function an ordinary role owns (and can replace later): oas._codec_call refuses it.
        IF NOT pg_catalog.pg_has_role(proc.proowner, 'MEMBER') THEN
            RAISE EXCEPTION 'pg_oas: permission denied to register %: you do not own it', fn
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'every role that uses the codec runs its functions: register only functions you own';
        END IF;
        -- What every call checks: an administrator owns it and the types it uses.
        PERFORM oas._codec_call(fn, '$1');
    END LOOP;

    IF encode IS NOT NULL THEN
        SELECT p.prorettype INTO ret_type FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) encode;
        IF next.name IS NOT NULL THEN
            IF next.encode IS NULL THEN
                RAISE EXCEPTION 'pg_oas: codec "%" has no encode function to chain "%" to', chains_to, name
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            SELECT p.proargtypes[0] INTO takes FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) next.encode;
            IF ret_type <> takes THEN
                RAISE EXCEPTION 'pg_oas: % returns %, and codec "%" encodes %', encode, ret_type, chains_to, takes
                    USING ERRCODE = 'datatype_mismatch';
            END IF;
        ELSIF NOT (CASE end_codec
                WHEN 'blob' THEN ret_type IN ('jsonb'::regtype, 'json'::regtype, 'text'::regtype)
                                 OR (SELECT t.typcategory = 'A' FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) ret_type)
                WHEN 'npy' THEN ret_type = 'bytea'::regtype
                                 OR (SELECT t.typcategory = 'A' FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) ret_type)
                WHEN 'filepath' THEN false
                ELSE ret_type = 'bytea'::regtype END) THEN
            RAISE EXCEPTION 'pg_oas: % returns %, which <%> does not take', encode, ret_type, end_codec
                USING ERRCODE = 'datatype_mismatch',
                      HINT = CASE end_codec
                          WHEN 'blob' THEN 'an encode function chained to <blob> returns jsonb, json, text or an array (as oas_blob takes them)'
                          WHEN 'npy' THEN 'an encode function chained to <npy> returns a .npy file (bytea) or an array'
                          WHEN 'filepath' THEN '<filepath@> values are registered with oas_filepath(path, store): give such a codec no encode function'
                          WHEN 'attach' THEN 'an encode function chained to <attach> returns filename\0contents (oas_attach_pack(name, bytes))'
                          ELSE 'an encode function chained to <' || end_codec || '> returns bytea' END;
        END IF;
    END IF;

    IF decode IS NOT NULL THEN
        SELECT p.proargtypes[0] INTO arg_type FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) decode;
        IF next.name IS NOT NULL THEN
            IF next.decode IS NULL THEN
                RAISE EXCEPTION 'pg_oas: codec "%" has no decode function to chain "%" to', chains_to, name
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            SELECT p.prorettype INTO takes FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) next.decode;
        ELSE
            takes := CASE WHEN end_codec IN ('attach', 'hash') THEN 'bytea' ELSE 'jsonb' END;
        END IF;
        IF arg_type <> takes THEN
            RAISE EXCEPTION 'pg_oas: % takes %, and what it decodes is %', decode, arg_type, takes
                USING ERRCODE = 'datatype_mismatch';
        END IF;
    END IF;

    INSERT INTO oas.codec (name, chains_to, encode, decode)
    VALUES (oas_codec_register.name, oas_codec_register.chains_to, oas_codec_register.encode,
            oas_codec_register.decode);
    -- Columns of this codec are now classified by their chain's end: give them their triggers.
    PERFORM oas._sync_table(t.table_oid)
    FROM (SELECT DISTINCT c.table_oid FROM oas.tracked_columns c
          WHERE c.codec OPERATOR(pg_catalog.=) oas_codec_register.name) t;
END
$fn$;

-- Drop a registered codec (refused while another codec chains to it). Its columns are tracked
-- from their values' JSON again, as any codec this database does not know.
CREATE FUNCTION oas.oas_codec_drop(name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT pg_catalog.pg_has_role('oas_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'pg_oas: permission denied to drop codec "%"', name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'only members of oas_admin drop codecs';
    END IF;
    IF EXISTS (SELECT 1 FROM oas.codec c WHERE c.chains_to OPERATOR(pg_catalog.=) oas_codec_drop.name) THEN
        RAISE EXCEPTION 'pg_oas: codec "%" is in use: % chain to it', name,
            (SELECT pg_catalog.string_agg(c.name, ', ' ORDER BY c.name) FROM oas.codec c
             WHERE c.chains_to OPERATOR(pg_catalog.=) oas_codec_drop.name)
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'drop the codecs that chain to it first';
    END IF;
    DELETE FROM oas.codec c WHERE c.name OPERATOR(pg_catalog.=) oas_codec_drop.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pg_oas: codec "%" is not registered', name
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM oas._sync_table(t.table_oid)
    FROM (SELECT DISTINCT c.table_oid FROM oas.tracked_columns c
          WHERE c.codec OPERATOR(pg_catalog.=) oas_codec_drop.name) t;
END
$fn$;

-- A value for a column of the registered codec `codec` (`<codec@store>`): its encode functions
-- run, outermost first, as the calling role; the result goes to its chain's end as oas_blob(),
-- oas_attach(), oas_hash(), oas_npy() or oas_object() take it; the row trigger stores it where
-- DataJoint would. Use it in INSERT or UPDATE. A NULL value stays NULL.
CREATE FUNCTION oas.oas_encode(codec text, value anyelement) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    expr text := '$1';
    c text := codec;
    k oas.codec;
    end_codec text;
    feeds regtype;
    result jsonb;
BEGIN
    IF value IS NULL THEN
        RETURN NULL;
    END IF;
    end_codec := oas._codec_end(codec);
    IF end_codec IS NULL OR end_codec = codec THEN
        RAISE EXCEPTION 'pg_oas: codec "%" is not a registered custom codec', codec
            USING ERRCODE = 'undefined_object',
                  HINT = CASE WHEN end_codec = codec
                              THEN pg_catalog.format('make <%s@> values with oas_%s()', codec, codec)
                              ELSE 'register it with SELECT oas.oas_codec_register(name, chains_to, encode, decode); SELECT * FROM oas.codec lists them' END;
    END IF;
    IF end_codec = 'filepath' THEN
        RAISE EXCEPTION 'pg_oas: codec "%" chains to <filepath>: its values are registered, not encoded', codec
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'register the file with oas_filepath(path, store)';
    END IF;
    LOOP
        SELECT * INTO k FROM oas.codec x WHERE x.name OPERATOR(pg_catalog.=) c;
        EXIT WHEN NOT FOUND;
        IF k.encode IS NULL THEN
            RAISE EXCEPTION 'pg_oas: codec "%" has no encode function', c
                USING ERRCODE = 'feature_not_supported';
        END IF;
        expr := oas._codec_call(k.encode, expr);
        SELECT p.prorettype INTO feeds FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) k.encode;
        c := k.chains_to;
    END LOOP;
    -- json keeps its keys in the order written (as Python's dicts do), so it goes to oas_blob as
    -- text; jsonb puts them in its own order (the same value, other bytes, another hash).
    IF feeds = 'json'::regtype THEN
        expr := '(' || expr || ')::text';
    END IF;
    expr := CASE end_codec
        WHEN 'attach' THEN pg_catalog.format(
            '(SELECT oas.oas_attach(a.filename, a.contents) FROM oas.oas_attach_unpack(%s) a)', expr)
        ELSE pg_catalog.format('oas.oas_%s(%s)', end_codec, expr) END;
    EXECUTE pg_catalog.format('SELECT oas._pending_codec(%s, $2)', expr) INTO result USING value, codec;
    RETURN result;
END
$fn$;

-- The value of a column of the registered codec `codec` (`<codec@store>`): its chain's end is
-- read (a <blob@> object unpacked, an <attach@>/<hash@> object's bytes, or the reference itself
-- for <npy@>, <object@> and <filepath@>), then the decode functions run, innermost first, as the
-- calling role. The result as jsonb.
CREATE FUNCTION oas.oas_decode(codec text, stored jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN oas._decode(codec, stored, false);
END
$fn$;

-- The value of an in-table column of the registered codec `codec` (`<codec>`, bytea): a chain
-- ending at <blob> is unpacked, one ending at <attach> is given as its bytes, then the decode
-- functions run, innermost first, as the calling role.
CREATE FUNCTION oas.oas_decode(codec text, stored bytea) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN oas._decode(codec, stored, true);
END
$fn$;

CREATE FUNCTION oas._decode(codec text, stored anyelement, in_table boolean) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    end_codec text := oas._codec_end(codec);
    chain oas.codec[] := '{}';
    k oas.codec;
    c text := codec;
    expr text;
    result jsonb;
    i int;
BEGIN
    IF stored IS NULL THEN
        RETURN NULL;
    END IF;
    IF end_codec IS NULL OR end_codec = codec THEN
        RAISE EXCEPTION 'pg_oas: codec "%" is not a registered custom codec', codec
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT * FROM oas.codec lists them; built-in values are read with oas_blob_get, oas_hash_get, oas_attach_get, oas_read';
    END IF;
    LOOP
        SELECT * INTO k FROM oas.codec x WHERE x.name OPERATOR(pg_catalog.=) c;
        EXIT WHEN NOT FOUND;
        IF k.decode IS NULL THEN
            RAISE EXCEPTION 'pg_oas: codec "%" has no decode function', c
                USING ERRCODE = 'feature_not_supported';
        END IF;
        chain := chain || k;
        c := k.chains_to;
    END LOOP;
    IF in_table THEN
        expr := CASE end_codec WHEN 'blob' THEN 'oas.oas_blob_unpack($1)' WHEN 'attach' THEN '$1' END;
        IF expr IS NULL THEN
            RAISE EXCEPTION 'pg_oas: codec "%" chains to <%>, whose values are references (jsonb), not bytes', codec, end_codec
                USING ERRCODE = 'datatype_mismatch';
        END IF;
    ELSE
        expr := CASE end_codec WHEN 'blob' THEN 'oas.oas_blob_get($1)'
                               WHEN 'attach' THEN 'oas.oas_hash_get($1)'
                               WHEN 'hash' THEN 'oas.oas_hash_get($1)'
                               ELSE '$1' END;
    END IF;
    FOR i IN REVERSE pg_catalog.cardinality(chain) .. 1 LOOP
        expr := oas._codec_call((chain[i]).decode, expr);
    END LOOP;
    EXECUTE pg_catalog.format('SELECT pg_catalog.to_jsonb(%s)', expr) INTO result USING stored;
    RETURN result;
END
$fn$;

COMMENT ON FUNCTION oas.oas_codec_register(text, text, regprocedure, regprocedure) IS
    'pg_oas: register a custom codec (oas_admin): its name, what it chains to (blob, attach, hash, npy, object, filepath or a registered codec), and its encode and decode functions (owned by you)';
COMMENT ON FUNCTION oas.oas_codec_drop(text) IS
    'pg_oas: drop a registered custom codec (oas_admin); refused while another codec chains to it';
COMMENT ON FUNCTION oas.oas_encode(text, anyelement) IS
    'pg_oas: a pending value for a column of a registered custom codec: its encode functions run as you, the row trigger stores the result where DataJoint would';
COMMENT ON FUNCTION oas.oas_decode(text, jsonb) IS
    'pg_oas: the value of a column of a registered custom codec: the end of its chain read, then its decode functions, as jsonb';
COMMENT ON FUNCTION oas.oas_decode(text, bytea) IS
    'pg_oas: the value of an in-table column of a registered custom codec (a <blob> or <attach> chain), decoded, as jsonb';
