-- Tenant API keys for service clients, request signing, and pending handoffs found by their receiver.

-- A key may be bound to one agent (NULL: it may act as any agent of its tenant) and may require every request
-- to be signed (its bearer form is then refused). Key ids are unique across tenants: a request names its key
-- before anyone knows its tenant.
ALTER TABLE api_keys
    ADD COLUMN agent_id text,
    ADD COLUMN require_signature boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX api_keys_id ON api_keys (id);

-- Row-level security admits a key of any tenant to exactly one lookup: the transaction that names its id in
-- agent_memory.api_key (set only by the server's key check, with no tenant set) sees that one row, and may
-- only record its use. Every other transaction still sees only its own tenant's keys.
CREATE POLICY key_lookup ON api_keys FOR SELECT
    USING (id = nullif(current_setting('agent_memory.api_key', true), ''));
CREATE POLICY key_touch ON api_keys FOR UPDATE
    USING (id = nullif(current_setting('agent_memory.api_key', true), ''))
    WITH CHECK (id = nullif(current_setting('agent_memory.api_key', true), ''));

-- Signatures of signed requests seen within the replay window: a second request with one is a replay.
CREATE TABLE request_signatures (
    tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    signature  text NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, signature)
);
CREATE INDEX request_signatures_seen ON request_signatures (tenant_id, seen_at);
GRANT SELECT, INSERT, DELETE ON request_signatures TO agent_memory_app;
ALTER TABLE request_signatures ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON request_signatures
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

-- Each recall reads the packets waiting for its agent (not the tenant's oldest few, which could hide one).
DROP INDEX handoffs_pending;
CREATE INDEX handoffs_pending ON handoffs (tenant_id, to_agent, created_at) WHERE status = 'pending';
