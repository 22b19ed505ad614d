-- Undo of V3: rows still in the outbox are lost with it; ship them first.
DROP TABLE audit_outbox;
