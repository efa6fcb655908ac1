-- Change capture, version 1.
--
-- Every statement that touches `queue` or `primary_profiles` records the
-- usernames it affected (old and new names, lower-cased, once each) in a change
-- log, in the writer's own transaction, and notifies `profile_status_v1` with the
-- newest change id as payload. The notification is only a wake-up hint: the
-- projector reads the log, re-reads the rows, and deletes the entries it applied,
-- so changes committed while nobody listened are never lost.

CREATE TABLE IF NOT EXISTS @extschema@.profile_status_changes_v1 (
    id BIGSERIAL PRIMARY KEY,
    -- NULL means "every username" (TRUNCATE).
    username TEXT,
    source TEXT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT pg_catalog.clock_timestamp()
);

-- SECURITY DEFINER: writers need no privilege on the change log. It runs with
-- its owner's rights in every writer's transaction, so nothing in it may be
-- redirected (CVE-2018-1058): the search path is pg_catalog first and pg_temp
-- last (a writer's temporary table named like the change log is never used),
-- and every table, function and operator is named with its schema anyway,
-- because a closer-typed function in a schema on the path wins over
-- pg_catalog's (`lower(varchar)` over `lower(text)`). `migrate
-- --capture-owner ROLE` hands it to a role that may only append to the log.
CREATE OR REPLACE FUNCTION @extschema@.profile_status_capture_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, @extschema@, pg_temp AS $$
DECLARE
    newest BIGINT;
BEGIN
    IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' THEN
        INSERT INTO @extschema@.profile_status_changes_v1 (username, source)
        VALUES (NULL, TG_TABLE_NAME) RETURNING id INTO newest;
    ELSIF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
        WITH logged AS (
            INSERT INTO @extschema@.profile_status_changes_v1 (username, source)
            SELECT DISTINCT pg_catalog.lower(username), TG_TABLE_NAME FROM new_rows
            RETURNING id
        ) SELECT pg_catalog.max(id) INTO newest FROM logged;
    ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        WITH logged AS (
            INSERT INTO @extschema@.profile_status_changes_v1 (username, source)
            SELECT DISTINCT pg_catalog.lower(username), TG_TABLE_NAME FROM old_rows
            RETURNING id
        ) SELECT pg_catalog.max(id) INTO newest FROM logged;
    ELSE
        -- An UPDATE may rename: both the old and the new name change status.
        WITH logged AS (
            INSERT INTO @extschema@.profile_status_changes_v1 (username, source)
            SELECT pg_catalog.lower(username), TG_TABLE_NAME FROM new_rows
            UNION
            SELECT pg_catalog.lower(username), TG_TABLE_NAME FROM old_rows
            RETURNING id
        ) SELECT pg_catalog.max(id) INTO newest FROM logged;
    END IF;
    IF newest IS NOT NULL THEN
        PERFORM pg_catalog.pg_notify('profile_status_v1', newest::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER profile_status_ins_v1 AFTER INSERT ON @extschema@.queue
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.profile_status_capture_v1();
CREATE OR REPLACE TRIGGER profile_status_upd_v1 AFTER UPDATE ON @extschema@.queue
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.profile_status_capture_v1();
CREATE OR REPLACE TRIGGER profile_status_del_v1 AFTER DELETE ON @extschema@.queue
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.profile_status_capture_v1();
CREATE OR REPLACE TRIGGER profile_status_trunc_v1 AFTER TRUNCATE ON @extschema@.queue
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.profile_status_capture_v1();

CREATE OR REPLACE TRIGGER profile_status_ins_v1 AFTER INSERT ON @extschema@.primary_profiles
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.profile_status_capture_v1();
CREATE OR REPLACE TRIGGER profile_status_upd_v1 AFTER UPDATE ON @extschema@.primary_profiles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.profile_status_capture_v1();
CREATE OR REPLACE TRIGGER profile_status_del_v1 AFTER DELETE ON @extschema@.primary_profiles
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.profile_status_capture_v1();
CREATE OR REPLACE TRIGGER profile_status_trunc_v1 AFTER TRUNCATE ON @extschema@.primary_profiles
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.profile_status_capture_v1();
