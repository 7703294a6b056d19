-- The format migration is found by a marker, not by a partial index of unbound versions: that
-- index was rewritten once per version as the migration bound it (a second tree updated beside
-- every row), for a question asked once per start.
DROP INDEX credential_versions_unbound;
INSERT INTO integrity_pending (what)
    SELECT 'versions' WHERE EXISTS (SELECT 1 FROM credential_versions WHERE binding IS NULL);
