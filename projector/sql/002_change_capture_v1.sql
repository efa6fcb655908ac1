-- Change capture, version 1.
--
-- Every statement that touches `queue` or `primary_profiles` records the
-- usernames it affected (old and new names, lower-cased, once each) in a change
-- log, in the writer's own transaction, and notifies `profile_status_v1` with the
-- newest change id as payload. The notification is only a wake-up hint: the
-- projector reads the log, re-reads the rows, and deletes the entries it applied,
-- so changes committed while nobody listened are never lost.

CREATE TABLE IF NOT EXISTS profile_status_changes_v1 (
    id BIGSERIAL PRIMARY KEY,
    -- NULL means "every username" (TRUNCATE).
    username TEXT,
    source TEXT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- SECURITY DEFINER: writers need no privilege on the change log; the search
-- path is pinned to the one `migrate` ran with, so the definer's rights cannot
-- be steered to other objects.
CREATE OR REPLACE FUNCTION profile_status_capture_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    newest BIGINT;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO profile_status_changes_v1 (username, source)
        VALUES (NULL, TG_TABLE_NAME) RETURNING id INTO newest;
    ELSIF TG_OP = 'INSERT' THEN
        WITH logged AS (
            INSERT INTO profile_status_changes_v1 (username, source)
            SELECT DISTINCT lower(username), TG_TABLE_NAME FROM new_rows
            RETURNING id
        ) SELECT max(id) INTO newest FROM logged;
    ELSIF TG_OP = 'DELETE' THEN
        WITH logged AS (
            INSERT INTO profile_status_changes_v1 (username, source)
            SELECT DISTINCT lower(username), TG_TABLE_NAME FROM old_rows
            RETURNING id
        ) SELECT max(id) INTO newest FROM logged;
    ELSE
        -- An UPDATE may rename: both the old and the new name change status.
        WITH logged AS (
            INSERT INTO profile_status_changes_v1 (username, source)
            SELECT lower(username), TG_TABLE_NAME FROM new_rows
            UNION
            SELECT lower(username), TG_TABLE_NAME FROM old_rows
            RETURNING id
        ) SELECT max(id) INTO newest FROM logged;
    END IF;
    IF newest IS NOT NULL THEN
        PERFORM pg_notify('profile_status_v1', newest::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER profile_status_ins_v1 AFTER INSERT ON queue
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION profile_status_capture_v1();
CREATE OR REPLACE TRIGGER profile_status_upd_v1 AFTER UPDATE ON queue
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION profile_status_capture_v1();
CREATE OR REPLACE TRIGGER profile_status_del_v1 AFTER DELETE ON queue
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION profile_status_capture_v1();
CREATE OR REPLACE TRIGGER profile_status_trunc_v1 AFTER TRUNCATE ON queue
    FOR EACH STATEMENT EXECUTE FUNCTION profile_status_capture_v1();

CREATE OR REPLACE TRIGGER profile_status_ins_v1 AFTER INSERT ON primary_profiles
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION profile_status_capture_v1();
CREATE OR REPLACE TRIGGER profile_status_upd_v1 AFTER UPDATE ON primary_profiles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION profile_status_capture_v1();
CREATE OR REPLACE TRIGGER profile_status_del_v1 AFTER DELETE ON primary_profiles
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION profile_status_capture_v1();
CREATE OR REPLACE TRIGGER profile_status_trunc_v1 AFTER TRUNCATE ON primary_profiles
    FOR EACH STATEMENT EXECUTE FUNCTION profile_status_capture_v1();
