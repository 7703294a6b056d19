-- A counter that moves whenever a tenant key or root key row changes or goes, whoever changed
-- it (any server sharing the database, or an edit of it), so that a server can tell with one
-- read of one row that none of the key states it keeps in memory is out of date. A new row
-- moves nothing: no one keeps a state of a key that did not exist.
CREATE TABLE key_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n BIGINT NOT NULL
);
INSERT INTO key_epoch (id, n) VALUES (1, 0);

-- Statement triggers (one bump per statement, not per row: a root rotation rewraps every tenant
-- key in a few statements), which fire only when the statement touched a row.
CREATE FUNCTION rekey_key_epoch_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM touched) THEN
        UPDATE key_epoch SET n = n + 1 WHERE id = 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tenant_keks_changed AFTER UPDATE ON tenant_keks REFERENCING OLD TABLE AS touched
    FOR EACH STATEMENT EXECUTE FUNCTION rekey_key_epoch_bump();
CREATE TRIGGER tenant_keks_deleted AFTER DELETE ON tenant_keks REFERENCING OLD TABLE AS touched
    FOR EACH STATEMENT EXECUTE FUNCTION rekey_key_epoch_bump();
CREATE TRIGGER root_keys_changed AFTER UPDATE ON root_keys REFERENCING OLD TABLE AS touched
    FOR EACH STATEMENT EXECUTE FUNCTION rekey_key_epoch_bump();
CREATE TRIGGER root_keys_deleted AFTER DELETE ON root_keys REFERENCING OLD TABLE AS touched
    FOR EACH STATEMENT EXECUTE FUNCTION rekey_key_epoch_bump();
