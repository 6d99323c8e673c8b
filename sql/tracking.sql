-- Object-store columns, their references, and what they use. Runs after the functions pgrx
-- generates (it uses oas_parse_marker and oas_check_reference).

-- Every column whose comment carries a DataJoint codec marker with a store. Derived from the
-- comments themselves, so it is never out of date: a table DataJoint creates (CREATE TABLE,
-- then COMMENT ON COLUMN) is here as soon as the comment commits. `chain_end` is the built-in
-- codec a custom codec registered in oas.codec chains to (NULL for one this database does not
-- know); `addressing` follows it.
CREATE VIEW oas.tracked_columns AS
SELECT n.nspname::text AS schema_name,
       c.relname::text AS table_name,
       a.attname::text AS column_name,
       c.oid::regclass AS table_oid,
       m.codec,
       m.store,
       coalesce(m.store, (SELECT s.name FROM oas.store s WHERE s.is_default)) AS resolved_store,
       CASE e.chain_end WHEN 'blob' THEN 'hash' WHEN 'attach' THEN 'hash' WHEN 'hash' THEN 'hash'
                        WHEN 'npy' THEN 'schema' WHEN 'object' THEN 'schema'
                        WHEN 'filepath' THEN 'filepath' ELSE m.addressing END AS addressing,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS data_type,
       m.user_comment,
       e.chain_end
FROM pg_catalog.pg_description d
JOIN pg_catalog.pg_class c ON d.classoid = 'pg_catalog.pg_class'::regclass AND d.objoid = c.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
CROSS JOIN LATERAL oas.oas_parse_marker(d.description) m
CROSS JOIN LATERAL (SELECT oas._codec_end(m.codec) AS chain_end) e
JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
WHERE d.objsubid > 0
  AND c.relkind IN ('r', 'p')
  AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  -- References are jsonb (or a domain over it). Nothing else is ever evaluated as one: the
  -- ledger's triggers run as the extension's owner, and a cast from another type is user code.
  AND (a.atttypid = 'pg_catalog.jsonb'::pg_catalog.regtype
       OR (ty.typtype = 'd' AND ty.typbasetype = 'pg_catalog.jsonb'::pg_catalog.regtype))
  -- Other sessions' temporary tables cannot be read.
  AND (c.relpersistence <> 't' OR c.relnamespace = pg_catalog.pg_my_temp_schema());
COMMENT ON VIEW oas.tracked_columns IS 'pg_oas: columns holding object references (DataJoint codec markers with a store)';
GRANT SELECT ON oas.tracked_columns TO PUBLIC;

-- The store and path of a reference, given its column's store (the codec's store, or the default
-- store): the one home of this rule. A reference that names no store (null or "", as DataJoint
-- writes for its default store) is in its column's store. One row for every value; `path` is NULL
-- where the value is not an object with a path (each caller decides what that means). Inlined into
-- the queries that call it (LANGUAGE sql, IMMUTABLE, no SET: operators are qualified instead).
CREATE FUNCTION oas._reference(ref jsonb, column_store text)
RETURNS TABLE (store text, path text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN ref OPERATOR(pg_catalog.->>) 'store' OPERATOR(pg_catalog.<>) ''
                THEN ref OPERATOR(pg_catalog.->>) 'store' ELSE column_store END,
           ref OPERATOR(pg_catalog.->>) 'path'
$$;

-- Every tracked column (of table `only_table`, or all), once, in order: the one walk over them.
-- `why_not` is NULL where the caller may read the whole table, and otherwise says why not (no
-- SELECT privilege, or row security would filter it for the caller: such a table is skipped,
-- never read in part). `refs` is a query over the column's non-NULL values, with the columns
-- ref (the value as jsonb), store and path (from oas._reference) and row_key (with `keys`, the
-- row's primary key as jsonb, or its ctid; otherwise NULL). Run it with row_security = off.
CREATE FUNCTION oas._tracked_refs(keys boolean DEFAULT false, only_table oid DEFAULT NULL)
RETURNS TABLE (table_oid regclass, schema_name text, table_name text, column_name text,
               codec text, addressing text, resolved_store text, why_not text, refs text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT t.table_oid, t.schema_name, t.table_name, t.column_name, t.codec, t.addressing,
           t.resolved_store,
           CASE WHEN NOT pg_catalog.has_table_privilege(t.table_oid, 'SELECT') THEN 'no SELECT privilege'
                WHEN pg_catalog.row_security_active(t.table_oid) THEN 'row security applies'
           END,
           pg_catalog.format(
               'SELECT %s AS row_key, v.ref, r.store, r.path FROM %s AS oas_t'
               ' CROSS JOIN LATERAL (SELECT oas_t.%I::pg_catalog.jsonb) v(ref)'
               ' CROSS JOIN LATERAL oas._reference(v.ref, %L) r WHERE v.ref IS NOT NULL',
               CASE WHEN keys THEN coalesce(
                   (SELECT 'pg_catalog.jsonb_build_object('
                           || pg_catalog.string_agg(pg_catalog.format('%L, oas_t.%I', a.attname, a.attname), ', '
                                                    ORDER BY pg_catalog.array_position(i.indkey::int2[], a.attnum))
                           || ')'
                    FROM pg_catalog.pg_index i
                    JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
                                                  AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey)
                    WHERE i.indrelid OPERATOR(pg_catalog.=) t.table_oid AND i.indisprimary),
                   'pg_catalog.jsonb_build_object(''ctid'', oas_t.ctid::text)')
               ELSE 'NULL::pg_catalog.jsonb' END,
               t.table_oid, t.column_name, t.resolved_store)
    FROM oas.tracked_columns t
    WHERE only_table IS NULL OR t.table_oid OPERATOR(pg_catalog.=) only_table
    ORDER BY t.schema_name, t.table_name, t.column_name
$fn$;

-- Check every reference in every tracked column the caller may read: the object exists, its
-- size matches, and (check_content) its MD5 matches where the reference records a hash.
-- Returns one row per broken reference, with the row's primary key.
--
-- oas_verify, oas_usage and oas_store_references read other roles' tables, often on behalf of an
-- administrator: they pin search_path and never run a table's row-security policies (a policy is
-- its owner's code, run as the caller). A table whose policies would apply to the caller is
-- skipped, as one the caller may not read is; row_security = off makes a policy an error, never
-- a call, should one slip through.
CREATE FUNCTION oas.oas_verify(check_content boolean DEFAULT true, only_store text DEFAULT NULL)
RETURNS TABLE (schema_name text, table_name text, column_name text, row_key jsonb,
               store text, path text, problem text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET row_security = off
AS $fn$
#variable_conflict use_column
DECLARE
    col record;
    rec record;
    found_problem text;
    checked bigint := 0;
    broken bigint := 0;
    skipped int := 0;
BEGIN
    FOR col IN SELECT w.* FROM oas._tracked_refs(keys => true) w LOOP
        IF col.why_not = 'no SELECT privilege' THEN
            RAISE NOTICE 'oas_verify: skipping %.%.% (no SELECT privilege on the table)',
                col.schema_name, col.table_name, col.column_name;
            skipped := skipped + 1;
            CONTINUE;
        END IF;
        IF col.why_not IS NOT NULL THEN
            RAISE NOTICE 'oas_verify: skipping %.%.% (row security applies to you; its owner or a role with BYPASSRLS can check it)',
                col.schema_name, col.table_name, col.column_name;
            skipped := skipped + 1;
            CONTINUE;
        END IF;
        FOR rec IN EXECUTE col.refs LOOP
            CONTINUE WHEN only_store IS NOT NULL AND rec.store IS DISTINCT FROM only_store;
            checked := checked + 1;
            found_problem := oas.oas_check_reference(rec.ref, check_content);
            IF found_problem IS NOT NULL THEN
                broken := broken + 1;
                schema_name := col.schema_name;
                table_name := col.table_name;
                column_name := col.column_name;
                row_key := rec.row_key;
                store := rec.store;
                path := rec.path;
                problem := found_problem;
                RETURN NEXT;
            END IF;
            IF checked % 10000 = 0 THEN
                RAISE NOTICE 'oas_verify: % references checked, % broken so far', checked, broken;
            END IF;
        END LOOP;
    END LOOP;
    RAISE NOTICE 'oas_verify: % references checked, % broken%', checked, broken,
        CASE WHEN skipped > 0 THEN format(', %s column(s) skipped', skipped) ELSE '' END;
END
$fn$;
COMMENT ON FUNCTION oas.oas_verify(boolean, text) IS
    'Check every reference in every tracked column the caller may read: the object exists, its size matches and (check_content) its MD5 matches. One row per broken reference, with the row''s primary key.';

-- References, distinct objects and bytes per store, schema, table and column, for BI tools.
-- Bytes count each distinct object of a column once (the size its references record; npy
-- references record none: see unsized_objects). An object shared by two columns counts in both.
CREATE FUNCTION oas.oas_usage()
RETURNS TABLE (store text, schema_name text, table_name text, column_name text, codec text,
               refs bigint, objects bigint, bytes numeric, unsized_objects bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET row_security = off
AS $fn$
#variable_conflict use_column
DECLARE
    col record;
BEGIN
    FOR col IN SELECT w.* FROM oas._tracked_refs() w WHERE w.why_not IS NULL LOOP
        RETURN QUERY EXECUTE format($q$
            WITH r AS (
                SELECT q.store AS s, q.path AS p,
                       CASE WHEN jsonb_typeof(q.ref->'size') = 'number' THEN (q.ref->>'size')::numeric END AS z
                FROM (%1$s) q),
            o AS (SELECT DISTINCT ON (s, p) s, p, z FROM r)
            SELECT o.s, %2$L::text, %3$L::text, %4$L::text, %5$L::text,
                   (SELECT count(*) FROM r WHERE r.s IS NOT DISTINCT FROM o.s),
                   count(*), coalesce(sum(o.z), 0), count(*) FILTER (WHERE o.z IS NULL)
            FROM o GROUP BY o.s $q$,
            col.refs, col.schema_name, col.table_name, col.column_name, col.codec);
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION oas.oas_usage() IS
    'References, distinct objects and bytes per store, schema, table and column (the view oas.usage); tables the caller may not read are left out.';

CREATE VIEW oas.usage AS SELECT * FROM oas.oas_usage();
COMMENT ON VIEW oas.usage IS 'pg_oas: references, objects and bytes per store, schema, table and column';
GRANT SELECT ON oas.usage TO PUBLIC;

-- A primary-key value as it appears in DataJoint's schema-addressed paths (`subject_id=42`,
-- `session_date=2024-01-15`, `t=2024-01-15T12-30-45`, URL-quoted unsafe strings, ...).
CREATE FUNCTION oas.oas_encode_pk_value(value anyelement) RETURNS text
LANGUAGE sql STABLE STRICT
SET datestyle = 'ISO, YMD'
SET extra_float_digits = 1
-- format('%s') uses the type's output function (a cast to text would strip char(n) padding).
AS $$ SELECT oas.oas_encode_pk_text(pg_catalog.pg_typeof(value)::oid, pg_catalog.format('%s', value)) $$;
COMMENT ON FUNCTION oas.oas_encode_pk_value(anyelement) IS
    'A primary-key value as DataJoint renders it in schema-addressed paths (subject_id=42, session_date=2024-01-15, URL-quoted strings).';

-- Rows referencing a store, per tracked column (refs is NULL where the caller may not read the
-- table, or its row security applies to the caller: those references could not be counted). oas_store_drop refuses while any are left.
CREATE FUNCTION oas.oas_store_references(store_name text)
RETURNS TABLE (schema_name text, table_name text, column_name text, refs bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET row_security = off
AS $fn$
#variable_conflict use_column
DECLARE
    col record;
    n bigint;
BEGIN
    FOR col IN SELECT w.* FROM oas._tracked_refs() w LOOP
        IF col.why_not IS NULL THEN
            EXECUTE format('SELECT count(*) FROM (%s) q WHERE q.store = $1', col.refs)
                INTO n USING store_name;
            CONTINUE WHEN n = 0;
        ELSE
            n := NULL;
        END IF;
        schema_name := col.schema_name;
        table_name := col.table_name;
        column_name := col.column_name;
        refs := n;
        RETURN NEXT;
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION oas.oas_store_references(text) IS
    'Rows referencing a store, per tracked column; refs is NULL where they could not be counted (the caller may not read the table, or its row security applies). oas_store_drop refuses while any are left.';
