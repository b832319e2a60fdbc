-- Canonical schema: what the numbered migrations build, in one file. A test proves they agree.
-- Change it together with a new migration; read it to learn the schema.

CREATE TABLE tenants (
    id             text PRIMARY KEY,
    created_at     timestamptz NOT NULL DEFAULT now(),
    derived_stale  boolean NOT NULL DEFAULT false,  -- chunks were deleted: recall rebuilds missing ones
    retention_days integer CHECK (retention_days > 0)  -- events older are purged by `retention purge`; NULL: kept
);

-- Ground truth, append-only (P1): rows are inserted, never updated; forgetting deletes.
CREATE TABLE events (
    tenant_id       text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id              text NOT NULL,
    session_id      text NOT NULL,
    agent_id        text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('message', 'tool_call', 'tool_result', 'decision',
                        'task_update', 'summary', 'fact', 'preference', 'artifact')),
    channel         text NOT NULL CHECK (channel IN ('private', 'team', 'agent', 'public')),
    actor           text,
    sensitivity     text NOT NULL CHECK (sensitivity IN ('none', 'low', 'high', 'secret')),
    text            text NOT NULL,
    text_hash       text NOT NULL,
    token_est       integer NOT NULL CHECK (token_est > 0),
    tags            text[] NOT NULL DEFAULT '{}',
    refs            text[] NOT NULL DEFAULT '{}',
    importance      real NOT NULL DEFAULT 0.5 CHECK (importance >= 0 AND importance <= 1),
    pinned          boolean NOT NULL DEFAULT false,
    metadata        jsonb NOT NULL DEFAULT '{}',
    structured      jsonb NOT NULL DEFAULT '{}',  -- a decision's or task update's own fields, as sent
    redactions      text[] NOT NULL DEFAULT '{}',
    duplicate_of    text,
    artifact_id     text,
    original_chars  integer NOT NULL,
    truncated       boolean NOT NULL DEFAULT false,
    ts              timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX events_tenant_ts ON events (tenant_id, ts DESC, id DESC);
CREATE INDEX events_session_ts ON events (tenant_id, session_id, ts DESC, id DESC);
CREATE INDEX events_kind_ts ON events (tenant_id, kind, ts DESC, id DESC);
CREATE INDEX events_text_hash ON events (tenant_id, text_hash, ts, id);
CREATE INDEX events_tags ON events USING gin (tags);

CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % is not allowed', TG_OP USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

-- Derived retrieval units (P2): disposable, rebuilt from events by `agent-memory reindex`.
CREATE TABLE chunks (
    tenant_id    text NOT NULL,
    id           text NOT NULL,
    event_id     text NOT NULL,
    seq          integer NOT NULL CHECK (seq >= 0),
    session_id   text NOT NULL,
    kind         text NOT NULL,
    channel      text NOT NULL,
    sensitivity  text NOT NULL,
    text         text NOT NULL,
    token_est    integer NOT NULL CHECK (token_est > 0),
    tsv          tsvector NOT NULL GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    importance   real NOT NULL,
    pinned       boolean NOT NULL,
    tags         text[] NOT NULL DEFAULT '{}',
    ts           timestamptz NOT NULL,
    embedding_model text,     -- the model of `embedding` (added below); NULL: not embedded yet
    embedding_dim integer CHECK (embedding_dim > 0),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, event_id, seq),
    FOREIGN KEY (tenant_id, event_id) REFERENCES events (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX chunks_tsv ON chunks USING gin (tsv);
CREATE INDEX chunks_tenant_ts ON chunks (tenant_id, ts DESC, id DESC);
CREATE INDEX chunks_session_ts ON chunks (tenant_id, session_id, ts DESC);
CREATE INDEX chunks_pinned ON chunks (tenant_id, ts DESC) WHERE pinned;
CREATE INDEX chunks_tags ON chunks USING gin (tags);
CREATE INDEX chunks_event ON chunks (tenant_id, event_id);
CREATE INDEX chunks_unembedded ON chunks (tenant_id, ts DESC, id DESC) WHERE embedding_model IS NULL;

-- Deleting chunks (derived data) marks their tenants stale, so that the next cold recall rebuilds them.
CREATE FUNCTION chunks_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tenants SET derived_stale = true
    WHERE id IN (SELECT DISTINCT tenant_id FROM deleted) AND NOT derived_stale;
    RETURN NULL;
END
$$;
CREATE TRIGGER chunks_deleted AFTER DELETE ON chunks
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION chunks_deleted();

CREATE FUNCTION chunks_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tenants SET derived_stale = true WHERE NOT derived_stale;
    RETURN NULL;
END
$$;
CREATE TRIGGER chunks_truncated AFTER TRUNCATE ON chunks
    FOR EACH STATEMENT EXECUTE FUNCTION chunks_truncated();

-- Embeddings: a pgvector column with an HNSW index where the extension exists, a plain real[] where it
-- does not (semantic scoring then reranks the bounded lexical candidate pool). Never required.
-- Each vector is recorded with its model and dimension (embedding_model, embedding_dim).
-- context_embedding: the chunk in its context (its text, then the text of the chunk before it in its session);
-- it helps rank a candidate, while `embedding` (the chunk alone) decides whether it is close to a query at all.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
        CREATE EXTENSION IF NOT EXISTS vector;
        ALTER TABLE chunks ADD COLUMN embedding vector(384);
        ALTER TABLE chunks ADD COLUMN context_embedding vector(384);
        CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_cosine_ops);
    ELSE
        ALTER TABLE chunks ADD COLUMN embedding real[];
        ALTER TABLE chunks ADD COLUMN context_embedding real[];
    END IF;
END
$$;
-- context_chunk_id: the chunk whose text the context vector carries (NULL: none), so that forgetting it drops
-- exactly the vectors that carry its text.
ALTER TABLE chunks ADD COLUMN context_chunk_id text;
CREATE INDEX chunks_context_source ON chunks (tenant_id, context_chunk_id) WHERE context_chunk_id IS NOT NULL;

-- Whole tool outputs too large for an event; the event keeps an excerpt and points here.
CREATE TABLE artifacts (
    tenant_id   text NOT NULL,
    id          text NOT NULL,
    event_id    text NOT NULL,
    mime_type   text NOT NULL DEFAULT 'text/plain',
    content     text NOT NULL,
    chars       integer NOT NULL,
    sha256      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, event_id) REFERENCES events (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX artifacts_event ON artifacts (tenant_id, event_id);

-- The decision ledger: superseded, never silently overwritten.
CREATE TABLE decisions (
    tenant_id      text NOT NULL,
    id             text NOT NULL,
    event_id       text NOT NULL,
    session_id     text NOT NULL,
    agent_id       text NOT NULL,
    channel        text NOT NULL,
    sensitivity    text NOT NULL,
    text           text NOT NULL,
    rationale      text,
    constraints    text[] NOT NULL DEFAULT '{}',
    alternatives   text[] NOT NULL DEFAULT '{}',
    consequences   text[] NOT NULL DEFAULT '{}',
    scope          text,
    confidence     real CHECK (confidence >= 0 AND confidence <= 1),
    refs           text[] NOT NULL DEFAULT '{}',
    importance     real NOT NULL DEFAULT 0.8,
    pinned         boolean NOT NULL DEFAULT false,
    token_est      integer NOT NULL CHECK (token_est > 0),
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'superseded')),
    supersedes     text,
    superseded_by  text,
    ts             timestamptz NOT NULL,
    superseded_at  timestamptz,
    tsv            tsvector NOT NULL GENERATED ALWAYS AS (
                       to_tsvector('english', text || ' ' || coalesce(rationale, '') || ' ' || coalesce(scope, ''))
                   ) STORED,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, event_id) REFERENCES events (tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX decisions_one_successor ON decisions (tenant_id, supersedes) WHERE supersedes IS NOT NULL;
CREATE INDEX decisions_status_ts ON decisions (tenant_id, status, ts DESC, id DESC);
CREATE INDEX decisions_tenant_ts ON decisions (tenant_id, ts DESC, id DESC);
CREATE INDEX decisions_event ON decisions (tenant_id, event_id);
CREATE INDEX decisions_tsv ON decisions USING gin (tsv);

-- Task state projected from task_update events.
CREATE TABLE tasks (
    tenant_id      text NOT NULL,
    id             text NOT NULL,
    title          text NOT NULL,
    status         text NOT NULL CHECK (status IN ('open', 'doing', 'blocked', 'done')),
    owner          text,
    session_id     text NOT NULL,
    channel        text NOT NULL,
    sensitivity    text NOT NULL,
    note           text,
    token_est      integer NOT NULL CHECK (token_est > 0),
    last_event_id  text NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX tasks_status ON tasks (tenant_id, status, updated_at DESC);

-- Packets one agent hands another.
CREATE TABLE handoffs (
    tenant_id       text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id              text NOT NULL,
    from_agent      text NOT NULL,
    to_agent        text NOT NULL,
    session_id      text NOT NULL,
    task            text NOT NULL,
    constraints     text[] NOT NULL DEFAULT '{}',
    decision_ids    text[] NOT NULL DEFAULT '{}',
    required_files  text[] NOT NULL DEFAULT '{}',
    open_questions  text[] NOT NULL DEFAULT '{}',
    refs            text[] NOT NULL DEFAULT '{}',
    token_est       integer NOT NULL CHECK (token_est > 0),
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered')),
    created_at      timestamptz NOT NULL,
    delivered_at    timestamptz,
    delivered_session text,   -- the receiving agent's session whose recall delivered it
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX handoffs_pending ON handoffs (tenant_id, to_agent, created_at) WHERE status = 'pending';
CREATE INDEX handoffs_delivered ON handoffs (tenant_id, delivered_session, delivered_at DESC)
    WHERE status = 'delivered';

-- Small human-curated documents (P6).
CREATE TABLE views (
    tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (name IN ('identity', 'rules', 'preferences', 'glossary')),
    body        text NOT NULL,
    token_est   integer NOT NULL CHECK (token_est > 0),
    version     integer NOT NULL DEFAULT 1,
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

-- Every read and write, who did it and how it went.
CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    text NOT NULL,
    principal    text NOT NULL,
    action       text NOT NULL,
    resource_ids text[] NOT NULL DEFAULT '{}',
    success      boolean NOT NULL,
    latency_ms   real,
    request_id   text,
    detail       jsonb NOT NULL DEFAULT '{}',
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at);

-- Tenant API keys for service clients: only a hash is stored. A key may be bound to one agent (NULL: any agent
-- of its tenant) and may require every request to be signed. Key ids are unique across tenants: a request
-- names its key before anyone knows its tenant.
CREATE TABLE api_keys (
    tenant_id          text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                 text NOT NULL,
    name               text NOT NULL,
    key_hash           text NOT NULL UNIQUE,
    roles              text[] NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    revoked_at         timestamptz,
    last_used_at       timestamptz,
    agent_id           text,
    require_signature  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX api_keys_id ON api_keys (id);

-- Signatures of signed requests seen within the replay window: a second request with one is a replay.
CREATE TABLE request_signatures (
    tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    signature  text NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, signature)
);
CREATE INDEX request_signatures_seen ON request_signatures (tenant_id, seen_at);

-- Row-level security: the second wall between tenants. The server runs its tenant transactions as
-- agent_memory_app (no superuser, no owner: both would bypass row-level security) with the tenant set in
-- agent_memory.tenant for that transaction, so a query that forgets its tenant filter still sees, changes
-- and adds only that tenant's rows; with no tenant set it sees none. Forced, so the owner is held too unless
-- it is a superuser or BYPASSRLS (maintenance across tenants relies on that). schema_migrations stays
-- owner-only.

-- A role belongs to the whole server, shared by all its databases: the first migration to need it creates
-- it, the others (perhaps at the same moment) find it. The migrating user must be able to SET ROLE to it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'agent_memory_app') THEN
        BEGIN
            CREATE ROLE agent_memory_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration created it just now
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'the role agent_memory_app does not exist and % may not create it', current_user
                    USING ERRCODE = 'insufficient_privilege',
                          HINT = 'Give the migrating user CREATEROLE, or have a superuser run '
                                 'CREATE ROLE agent_memory_app NOLOGIN; GRANT agent_memory_app TO <that user>.';
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'agent_memory_app' AND (rolsuper OR rolbypassrls)) THEN
        RAISE EXCEPTION 'the role agent_memory_app bypasses row-level security'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'ALTER ROLE agent_memory_app NOSUPERUSER NOBYPASSRLS;';
    END IF;
    -- PostgreSQL 16 split the right to SET ROLE off membership; before it, any member may.
    IF NOT pg_has_role('agent_memory_app',
                       CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END)
    THEN
        BEGIN
            GRANT agent_memory_app TO CURRENT_USER;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION '% may not SET ROLE agent_memory_app, and may not grant it to itself', current_user
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'Have a superuser run GRANT agent_memory_app TO <the migrating user>.';
        END;
    END IF;
END
$$;

-- What the server may do. No UPDATE of events (append-only), no DELETE of tenants or of the audit log.
GRANT SELECT, INSERT, UPDATE ON tenants TO agent_memory_app;
GRANT SELECT, INSERT, DELETE ON events, chunks, artifacts TO agent_memory_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON decisions, tasks, handoffs, views, api_keys TO agent_memory_app;
GRANT SELECT, INSERT ON audit_log TO agent_memory_app;
GRANT UPDATE (embedding, context_embedding, embedding_model, embedding_dim, context_chunk_id) ON chunks
    TO agent_memory_app;  -- embedder
GRANT SELECT, INSERT, DELETE ON request_signatures TO agent_memory_app;

-- The tenant of the current transaction; NULL when none is set (a setting once set reads '' afterwards).
CREATE FUNCTION current_tenant() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT nullif(current_setting('agent_memory.tenant', true), '')
$$;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants USING (id = current_tenant()) WITH CHECK (id = current_tenant());
ALTER TABLE events ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON events
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
ALTER TABLE chunks ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON chunks
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
ALTER TABLE artifacts ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON artifacts
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
ALTER TABLE decisions ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON decisions
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
ALTER TABLE tasks ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tasks
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
ALTER TABLE handoffs ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON handoffs
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
ALTER TABLE views ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON views
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());
-- A key of any tenant is admitted to exactly one lookup: the transaction that names its id in
-- agent_memory.api_key (set only by the server's key check, with no tenant set) sees that one row and may only
-- record its use.
CREATE POLICY key_lookup ON api_keys FOR SELECT
    USING (id = nullif(current_setting('agent_memory.api_key', true), ''));
CREATE POLICY key_touch ON api_keys FOR UPDATE
    USING (id = nullif(current_setting('agent_memory.api_key', true), ''))
    WITH CHECK (id = nullif(current_setting('agent_memory.api_key', true), ''));
ALTER TABLE request_signatures ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON request_signatures
    USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant());

-- Full-text search served by its GIN indexes. Under row-level security the planner uses an index for a query's own
-- condition only when its operator is leakproof, and neither @@ nor && is. These functions do the full-text and tag
-- searches of evidence_pool (ids and ranks, joined to the chunks under row-level security) and decisions_matching (the decisions, checked
-- against the query's tenant again) as their owner (SECURITY DEFINER), each filtered by the transaction's tenant
-- itself: no tenant argument; none set, nothing found. Their search_path is pinned (pg_catalog, the schema of the
-- tables, pg_temp last); only agent_memory_app may run them. An owner that is a superuser or BYPASSRLS is not held
-- by row-level security in here, and the planner uses the indexes; any other owner gets the same results without
-- them (docs/deploy.md). PARALLEL RESTRICTED, so that the calling queries may still use parallel workers.
CREATE FUNCTION chunks_matching(horizon timestamptz, query tsquery, max_rows integer)
    RETURNS TABLE (id text, rank real)
    LANGUAGE sql STABLE PARALLEL RESTRICTED SECURITY DEFINER
AS $$
    SELECT c.id, ts_rank(c.tsv, $2) AS rank FROM chunks c
    WHERE c.tenant_id = current_tenant() AND c.ts <= $1 AND c.tsv @@ $2
    ORDER BY rank DESC, c.ts DESC, c.id DESC
    LIMIT $3
$$;

-- Full-text candidates of evidence_pool, at a cost that does not grow with a tenant's whole history: chunks made
-- since `since` (about the newest 100,000 of a large tenant; '-infinity' for any other) that match any of the terms,
-- and older ones only if they match every term. In a large tenant a term in more than 2% of all chunks (by the
-- table's statistics, which all tenants share) finds no chunks by itself, and a query of only such terms searches
-- only the newest chunks. chunks_matching is what servers of the previous version call (see migration 0008).
CREATE FUNCTION lexical_candidates(horizon timestamptz, terms text[], max_rows integer, since timestamptz)
    RETURNS TABLE (id text, rank real)
    LANGUAGE sql STABLE PARALLEL RESTRICTED SECURITY DEFINER
AS $$
    WITH common AS (
        SELECT s.lexeme FROM pg_stats p
        CROSS JOIN LATERAL unnest(p.most_common_elems::text::text[], p.most_common_elem_freqs) AS s (lexeme, share)
        WHERE (p.schemaname, p.tablename, p.attname) = (
                  SELECT n.nspname, c.relname, 'tsv' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = 'chunks'::regclass)
              AND s.lexeme IS NOT NULL AND s.share > 0.02  -- the frequencies end with three that are no lexeme's
    ), term AS (
        SELECT quote_literal(t) AS quoted, $4 > '-infinity' AND t IN (SELECT lexeme FROM common) AS common
        FROM unnest($2) AS t
    ), query AS MATERIALIZED (
        SELECT string_agg(quoted, ' | ')::tsquery AS any_term,
               coalesce(string_agg(quoted, ' | ') FILTER (WHERE NOT common), string_agg(quoted, ' | '))::tsquery
                   AS searched,
               CASE WHEN NOT bool_and(common) THEN string_agg(quoted, ' & ')::tsquery END AS every_term
        FROM term
    )
    SELECT m.id, m.rank FROM (
        (SELECT c.id, c.ts, ts_rank(c.tsv, q.any_term) AS rank FROM chunks c, query q
         WHERE c.tenant_id = current_tenant() AND c.ts <= $1 AND c.ts >= $4 AND c.tsv @@ q.searched
         ORDER BY rank DESC, c.ts DESC, c.id DESC LIMIT $3)
        UNION ALL
        (SELECT c.id, c.ts, ts_rank(c.tsv, q.any_term) AS rank FROM chunks c, query q
         WHERE $4 > '-infinity' AND q.every_term IS NOT NULL AND c.tenant_id = current_tenant() AND c.ts < $4
               AND c.ts <= $1
               AND c.tsv @@ q.every_term
         ORDER BY rank DESC, c.ts DESC, c.id DESC LIMIT $3)
    ) AS m
    ORDER BY m.rank DESC, m.ts DESC, m.id DESC
    LIMIT $3
$$;

-- The $3 newest chunks made by $1 that carry one of the tags $2. The tagged chunks are found first (the GIN index on
-- tags), then ordered: planned without the tags' values, the newest-first index would otherwise be walked until
-- enough of them turn up, which for a rare tag is the tenant's every chunk.
CREATE FUNCTION chunks_tagged(horizon timestamptz, wanted text[], max_rows integer)
    RETURNS TABLE (id text)
    LANGUAGE sql STABLE PARALLEL RESTRICTED SECURITY DEFINER
AS $$
    WITH tagged AS MATERIALIZED (
        SELECT c.id, c.ts FROM chunks c WHERE c.tenant_id = current_tenant() AND c.tags && $2 AND c.ts <= $1
    )
    SELECT t.id FROM tagged t ORDER BY t.ts DESC, t.id DESC LIMIT $3
$$;

CREATE FUNCTION decisions_matching(horizon timestamptz, query tsquery, max_rows integer)
    RETURNS SETOF decisions
    LANGUAGE sql STABLE PARALLEL RESTRICTED SECURITY DEFINER
AS $$
    SELECT d.* FROM decisions d
    WHERE d.tenant_id = current_tenant() AND d.ts <= $1 AND d.tsv @@ $2
    ORDER BY ts_rank_cd(d.tsv, $2) DESC, d.ts DESC, d.id DESC
    LIMIT $3
$$;

DO $$
DECLARE
    schema text := (SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = 'chunks'::regclass);
BEGIN
    EXECUTE format('ALTER FUNCTION chunks_matching(timestamptz, tsquery, integer) '
                   'SET search_path = pg_catalog, %s, pg_temp', schema);
    EXECUTE format('ALTER FUNCTION decisions_matching(timestamptz, tsquery, integer) '
                   'SET search_path = pg_catalog, %s, pg_temp', schema);
    EXECUTE format('ALTER FUNCTION chunks_tagged(timestamptz, text[], integer) '
                   'SET search_path = pg_catalog, %s, pg_temp', schema);
    EXECUTE format('ALTER FUNCTION lexical_candidates(timestamptz, text[], integer, timestamptz) '
                   'SET search_path = pg_catalog, %s, pg_temp', schema);
END
$$;

REVOKE ALL ON FUNCTION chunks_matching(timestamptz, tsquery, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION decisions_matching(timestamptz, tsquery, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION chunks_tagged(timestamptz, text[], integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION lexical_candidates(timestamptz, text[], integer, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION chunks_matching(timestamptz, tsquery, integer) TO agent_memory_app;
GRANT EXECUTE ON FUNCTION decisions_matching(timestamptz, tsquery, integer) TO agent_memory_app;
GRANT EXECUTE ON FUNCTION chunks_tagged(timestamptz, text[], integer) TO agent_memory_app;
GRANT EXECUTE ON FUNCTION lexical_candidates(timestamptz, text[], integer, timestamptz) TO agent_memory_app;
