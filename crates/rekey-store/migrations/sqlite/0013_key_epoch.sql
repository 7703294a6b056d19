-- A counter that moves whenever a tenant key or root key row changes or goes, whoever changed
-- it (this server, or an edit of the file), so that a server can tell with one read of one row
-- that none of the key states it keeps in memory is out of date. A new row moves nothing: no
-- one keeps a state of a key that did not exist.
CREATE TABLE key_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n INTEGER NOT NULL
);
INSERT INTO key_epoch (id, n) VALUES (1, 0);

CREATE TRIGGER tenant_keks_changed AFTER UPDATE ON tenant_keks
BEGIN UPDATE key_epoch SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER tenant_keks_deleted AFTER DELETE ON tenant_keks
BEGIN UPDATE key_epoch SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER root_keys_changed AFTER UPDATE ON root_keys
BEGIN UPDATE key_epoch SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER root_keys_deleted AFTER DELETE ON root_keys
BEGIN UPDATE key_epoch SET n = n + 1 WHERE id = 1; END;
