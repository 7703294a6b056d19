-- One commitment per unseal share of the split (index and SHA-256, 33 bytes each): a share
-- that does not match is refused before it counts. Splits made before have none.
ALTER TABLE seal_keyring ADD COLUMN commitments BLOB;
