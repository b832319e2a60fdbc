-- Retention per tenant: events older than this many days are purged by `agent-memory retention purge`
-- (NULL: kept until forgotten).
ALTER TABLE tenants ADD COLUMN retention_days integer CHECK (retention_days > 0);
