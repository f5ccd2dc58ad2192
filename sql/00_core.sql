-- Core helpers shared by every governance function: context, caller identity, errors.
-- Re-applied on every migrate (CREATE OR REPLACE).
--
-- Only SECURITY DEFINER functions pin search_path. Helpers that run with the caller's rights
-- do not: a SET clause stops the planner from inlining them and costs a GUC save/restore per
-- call on the hot path, and when a definer function calls them its pinned path applies.
-- Called directly, they run under the caller's search_path, so they name the built-ins they
-- use as pg_catalog.*: an overload planted in public that matches the argument types better
-- (pg_has_role(text, ...) against the catalog's pg_has_role(name, ...)) is never chosen.

-- governance.apply_context(p_context): install the wrapper's governance context as
-- transaction-local settings, so that triggers fired later in the same transaction see it.
-- NULL leaves the settings alone (a DBA's psql session, or a caller who set them already).
-- check_and_record installs the same settings inside its claiming INSERT (its hot path): keep
-- the two in step.
CREATE OR REPLACE FUNCTION governance.apply_context(p_context jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF p_context IS NULL OR pg_catalog.jsonb_typeof(p_context) <> 'object' THEN
        RETURN;
    END IF;
    PERFORM pg_catalog.set_config('governance.user', coalesce(p_context->>'user', ''), true),
            pg_catalog.set_config('governance.service', coalesce(p_context->>'service', ''), true),
            pg_catalog.set_config('governance.ip', coalesce(p_context->>'ip', ''), true),
            pg_catalog.set_config('governance.user_agent', coalesce(p_context->>'user_agent', ''),
                                  true),
            pg_catalog.set_config('governance.request_id', coalesce(p_context->>'request_id', ''),
                                  true);
END
$$;

-- governance.ctx(name): one value of the transaction's governance context, NULL when unset.
CREATE OR REPLACE FUNCTION governance.ctx(p_name text)
RETURNS text
LANGUAGE sql
STABLE
AS $$ SELECT nullif(pg_catalog.current_setting('governance.' || p_name, true), '') $$;

-- governance.ctx_ip(): the context's IP as inet, NULL when unset or not an address (a DBA may
-- set_config anything; an audit row must never be refused for it).
CREATE OR REPLACE FUNCTION governance.ctx_ip()
RETURNS inet
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v text := nullif(pg_catalog.current_setting('governance.ip', true), '');
BEGIN
    IF v IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN v::inet;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

-- governance.caller_role(): the role that called us, even inside a SECURITY DEFINER function
-- (where current_user is the owner). SET ROLE needs membership, so it cannot be faked.
CREATE OR REPLACE FUNCTION governance.caller_role()
RETURNS text
LANGUAGE sql
STABLE
AS $$ SELECT coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user::text) $$;

-- governance.caller_is_admin(): is the caller a member of governance_admin (or a superuser)?
CREATE OR REPLACE FUNCTION governance.caller_is_admin()
RETURNS boolean
LANGUAGE sql
STABLE
AS $$ SELECT pg_catalog.pg_has_role(governance.caller_role(), 'governance_admin', 'MEMBER') $$;

-- governance.raise_error(sqlstate, message, detail): raise a GV error with a JSON DETAIL.
CREATE OR REPLACE FUNCTION governance.raise_error(p_sqlstate text, p_message text,
                                                  p_detail jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = p_sqlstate, MESSAGE = p_message,
                          DETAIL = coalesce(p_detail, '{}'::jsonb)::text;
END
$$;

-- governance.blank_characters(): the characters Python's str.isspace() accepts, so that a value
-- the wrapper refuses as blank is refused from psql too (btrim alone strips only spaces). In a
-- database that is not UTF8 only the ASCII ones exist.
CREATE OR REPLACE FUNCTION governance.blank_characters()
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT E' \t\n\v\f\r\x1c\x1d\x1e\x1f'
           || CASE WHEN pg_catalog.getdatabaseencoding() = 'UTF8' THEN
                  pg_catalog.chr(133) || pg_catalog.chr(160) || pg_catalog.chr(5760)
                  || pg_catalog.chr(8192) || pg_catalog.chr(8193) || pg_catalog.chr(8194)
                  || pg_catalog.chr(8195) || pg_catalog.chr(8196) || pg_catalog.chr(8197)
                  || pg_catalog.chr(8198) || pg_catalog.chr(8199) || pg_catalog.chr(8200)
                  || pg_catalog.chr(8201) || pg_catalog.chr(8202) || pg_catalog.chr(8232)
                  || pg_catalog.chr(8233) || pg_catalog.chr(8239) || pg_catalog.chr(8287)
                  || pg_catalog.chr(12288)
              ELSE '' END
$$;

-- governance.is_blank(text): empty or whitespace only (NULL for NULL).
CREATE OR REPLACE FUNCTION governance.is_blank(p_value text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$ SELECT pg_catalog.btrim(p_value, governance.blank_characters()) = '' $$;

-- governance.require_admin(action): GV001 unless the caller belongs to governance_admin.
CREATE OR REPLACE FUNCTION governance.require_admin(p_action text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF NOT governance.caller_is_admin() THEN
        PERFORM governance.raise_error('GV001', p_action || ' requires the governance_admin role',
            pg_catalog.jsonb_build_object('role', governance.caller_role(), 'action', p_action));
    END IF;
END
$$;

-- governance.key_part(text): escape one part of a composite key so that different parts never
-- give the same key (':' separates parts; '%' is the escape character).
CREATE OR REPLACE FUNCTION governance.key_part(p text)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$ SELECT pg_catalog.replace(pg_catalog.replace(coalesce(p, ''), '%', '%25'), ':', '%3A') $$;

-- governance.journal_entry_key(app, model, object_id, action): the key of a journal entry.
CREATE OR REPLACE FUNCTION governance.journal_entry_key(p_app text, p_model text,
                                                        p_object_id text, p_action text)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT 'JE:' || governance.key_part(p_app) || ':' || governance.key_part(p_model) || ':'
        || governance.key_part(p_object_id) || ':' || governance.key_part(p_action)
$$;

-- governance.stock_movement_key(product, warehouse, movement_type, reference).
CREATE OR REPLACE FUNCTION governance.stock_movement_key(p_product_id text, p_warehouse_id text,
                                                         p_movement_type text, p_reference text)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT 'SM:' || governance.key_part(p_product_id) || ':' || governance.key_part(p_warehouse_id)
        || ':' || governance.key_part(p_movement_type) || ':' || governance.key_part(p_reference)
$$;

-- raise_error too: caller-rights functions (governance.resolve_relation ...) raise their GV
-- errors through it, and it does nothing a caller could not do with RAISE.
GRANT EXECUTE ON FUNCTION
    governance.raise_error(text, text, jsonb),
    governance.apply_context(jsonb), governance.ctx(text), governance.ctx_ip(),
    governance.caller_role(), governance.caller_is_admin(),
    governance.blank_characters(), governance.is_blank(text),
    governance.key_part(text), governance.journal_entry_key(text, text, text, text),
    governance.stock_movement_key(text, text, text, text)
TO governance_app, governance_auditor, governance_admin;
