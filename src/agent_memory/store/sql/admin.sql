-- Named SQL of the data-protection commands (forget). Loaded with queries.sql into one name space.

-- name: forget_targets_by_session
SELECT id FROM events WHERE tenant_id = $1 AND session_id = $2;

-- name: forget_targets_by_subject
-- Events in which $2 appears anywhere (text, actor, tags, metadata, structured fields, or the whole tool output
-- kept as the event's artifact), case-insensitively. Each value is compared as it is, at any depth of a JSON or
-- array column (the text of the whole row would escape quotes, backslashes and newlines).
SELECT id FROM events e
WHERE e.tenant_id = $1
  AND (EXISTS (SELECT 1 FROM jsonb_path_query(to_jsonb(e), 'strict $.**') AS v (value)
               WHERE jsonb_typeof(v.value) NOT IN ('object', 'array')
                 AND strpos(lower(v.value #>> '{}'), lower($2)) > 0)
       OR EXISTS (SELECT 1 FROM artifacts a
                  WHERE a.tenant_id = $1 AND a.event_id = e.id AND strpos(lower(a.content), lower($2)) > 0));

-- name: forget_targets_all
SELECT id FROM events WHERE tenant_id = $1;

-- name: lock_out_writers
-- A forget's first statement: the tenant's forget lock, exclusive. It waits for the tenant's writes in flight (each
-- holds the lock shared from its first statement, enter_tenant_to_write) and holds new ones until the forget ends,
-- so that the forget sees everything written before it, and no write links a duplicate to an event it deletes (the
-- duplicate, holding the forgotten text, would outlive it).
SELECT pg_advisory_xact_lock(hashtextextended($1 || ':forget', 0));

-- name: forget_existing
SELECT id FROM events WHERE tenant_id = $1 AND id = ANY($2::text[]);

-- name: forget_duplicates
-- Events recorded as duplicates of $2: they hold the same text.
SELECT id FROM events WHERE tenant_id = $1 AND duplicate_of = ANY($2::text[]) AND NOT id = ANY($2::text[]);

-- name: forget_task_ids
-- The tasks that task updates among $2 created or changed.
SELECT DISTINCT structured -> 'task' ->> 'task_id' AS task_id FROM events
WHERE tenant_id = $1 AND id = ANY($2::text[]) AND kind = 'task_update';

-- name: forget_decisions
-- The decisions recorded by events $2, with their chain links (to splice the chain around them).
SELECT id, supersedes, superseded_by FROM decisions WHERE tenant_id = $1 AND event_id = ANY($2::text[]);

-- name: forget_relink_successor
-- Decision $2 now supersedes $3 (the forgotten decision between them is gone).
UPDATE decisions SET supersedes = $3 WHERE tenant_id = $1 AND id = $2;

-- name: forget_relink_predecessor
-- Decision $2 is now superseded by $3; with $3 NULL the decision that superseded it was forgotten and was the
-- chain's head, so $2 is in force again (as if what superseded it had never been recorded).
UPDATE decisions
SET superseded_by = $3,
    status = CASE WHEN $3::text IS NULL THEN 'active' ELSE status END,
    superseded_at = CASE WHEN $3::text IS NULL THEN NULL ELSE superseded_at END
WHERE tenant_id = $1 AND id = $2;

-- name: forget_count_derived
-- What deleting events $2 takes with it (chunks, artifacts and decisions cascade from their event).
SELECT
    (SELECT count(*) FROM chunks WHERE tenant_id = $1 AND event_id = ANY($2::text[])) AS chunks,
    (SELECT count(*) FROM artifacts WHERE tenant_id = $1 AND event_id = ANY($2::text[])) AS artifacts,
    (SELECT count(*) FROM decisions WHERE tenant_id = $1 AND event_id = ANY($2::text[])) AS decisions;

-- name: forget_context_vectors
-- The vectors that carry the text of events $2 as context (see chunks_to_embed): those of every chunk whose
-- context_chunk_id is one of their chunks, wherever it now stands, and those of the chunk right after each of them
-- in its session (vectors made before context_chunk_id was recorded had that one's text). They are dropped; the
-- embedder makes them again.
WITH forgotten AS (
    SELECT f.id, f.session_id, f.ts, f.event_id, f.seq FROM chunks f
    WHERE f.tenant_id = $1 AND f.event_id = ANY($2::text[])
), carriers AS (
    SELECT c.id FROM chunks c JOIN forgotten f ON c.context_chunk_id = f.id WHERE c.tenant_id = $1
    UNION
    SELECT next.id FROM forgotten f
    CROSS JOIN LATERAL (
        SELECT x.id FROM chunks x
        WHERE x.tenant_id = $1 AND x.session_id = f.session_id
          AND (x.ts, x.event_id, x.seq) > (f.ts, f.event_id, f.seq)
        ORDER BY x.ts, x.event_id, x.seq
        LIMIT 1
    ) next
)
UPDATE chunks c
SET embedding = NULL, context_embedding = NULL, embedding_model = NULL, embedding_dim = NULL, context_chunk_id = NULL
FROM carriers
WHERE c.tenant_id = $1 AND c.id = carriers.id AND c.embedding_model IS NOT NULL
  AND c.event_id <> ALL($2::text[]);

-- name: forget_events
DELETE FROM events WHERE tenant_id = $1 AND id = ANY($2::text[]);

-- name: forget_tasks
DELETE FROM tasks WHERE tenant_id = $1 AND id = ANY($2::text[]);

-- name: forget_task_updates
-- The task updates left for tasks $2, oldest first (their state is replayed from them).
SELECT * FROM events
WHERE tenant_id = $1 AND kind = 'task_update' AND structured -> 'task' ->> 'task_id' = ANY($2::text[])
ORDER BY ts, id;

-- name: forget_handoffs_by_session
DELETE FROM handoffs WHERE tenant_id = $1 AND session_id = $2;

-- name: forget_handoffs_by_subject
-- Packets in which $2 appears anywhere, compared as in forget_targets_by_subject.
DELETE FROM handoffs h
WHERE h.tenant_id = $1
  AND EXISTS (SELECT 1 FROM jsonb_path_query(to_jsonb(h), 'strict $.**') AS v (value)
              WHERE jsonb_typeof(v.value) NOT IN ('object', 'array')
                AND strpos(lower(v.value #>> '{}'), lower($2)) > 0);

-- name: forget_handoffs_all
DELETE FROM handoffs WHERE tenant_id = $1;

-- name: forget_views_all
DELETE FROM views WHERE tenant_id = $1;

-- name: forget_api_keys_all
DELETE FROM api_keys WHERE tenant_id = $1;

-- ---------------------------------------------------------------------------------------------------------
-- Export and import of a tenant (agent-memory export / import). A page is rows as JSON without the tenant
-- and the generated columns, from time $2 on, after key $3, in key order, at most $4.

-- name: export_events
SELECT id AS key, to_jsonb(t) - 'tenant_id' AS row FROM events t
WHERE tenant_id = $1 AND ts >= $2 AND id > $3 ORDER BY id LIMIT $4;

-- name: export_artifacts
SELECT a.id AS key, to_jsonb(a) - 'tenant_id' AS row FROM artifacts a
JOIN events e ON e.tenant_id = a.tenant_id AND e.id = a.event_id
WHERE a.tenant_id = $1 AND e.ts >= $2 AND a.id > $3 ORDER BY a.id LIMIT $4;

-- name: export_chunks
-- Vectors as JSON arrays of numbers whatever their column type (pgvector's text form is not an array): an export
-- imports into a database with pgvector or without it.
SELECT id AS key,
       to_jsonb(t) - 'tenant_id' - 'tsv'
       || jsonb_build_object('embedding', to_jsonb(t.embedding::real[]),
                             'context_embedding', to_jsonb(t.context_embedding::real[])) AS row
FROM chunks t
WHERE tenant_id = $1 AND ts >= $2 AND id > $3 ORDER BY id LIMIT $4;

-- name: export_decisions
SELECT id AS key, to_jsonb(t) - 'tenant_id' - 'tsv' AS row FROM decisions t
WHERE tenant_id = $1 AND ts >= $2 AND id > $3 ORDER BY id LIMIT $4;

-- name: export_tasks
SELECT id AS key, to_jsonb(t) - 'tenant_id' AS row FROM tasks t
WHERE tenant_id = $1 AND updated_at >= $2 AND id > $3 ORDER BY id LIMIT $4;

-- name: export_handoffs
SELECT id AS key, to_jsonb(t) - 'tenant_id' AS row FROM handoffs t
WHERE tenant_id = $1 AND created_at >= $2 AND id > $3 ORDER BY id LIMIT $4;

-- name: export_views
SELECT name AS key, to_jsonb(t) - 'tenant_id' AS row FROM views t
WHERE tenant_id = $1 AND updated_at >= $2 AND name > $3 ORDER BY name LIMIT $4;

-- name: insertable_columns
-- The columns of table $2 an import fills: all but generated ones. No tenant: $1 is the table.
SELECT column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = $1 AND is_generated = 'NEVER'
ORDER BY ordinal_position;

-- ---------------------------------------------------------------------------------------------------------
-- Retention (agent-memory retention).

-- name: set_retention
UPDATE tenants SET retention_days = $2 WHERE id = $1 RETURNING retention_days;

-- name: get_retention
SELECT retention_days FROM tenants WHERE id = $1;

-- name: tenants_with_retention
-- Every tenant that has a retention (maintenance, as a login that bypasses row-level security). No $1.
SELECT id, retention_days FROM tenants WHERE retention_days IS NOT NULL ORDER BY id;

-- name: forget_targets_before
-- Events recorded before $2 that retention may purge: not pinned, not recording a decision still in force,
-- not an update of a task still open, and not the original of a duplicate recorded since (still current).
SELECT e.id FROM events e
WHERE e.tenant_id = $1 AND e.ts < $2 AND NOT e.pinned
  AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.tenant_id = $1 AND d.event_id = e.id AND d.status = 'active')
  AND NOT (e.kind = 'task_update' AND EXISTS (
      SELECT 1 FROM tasks t
      WHERE t.tenant_id = $1 AND t.id = e.structured -> 'task' ->> 'task_id' AND t.status <> 'done'))
  AND NOT EXISTS (SELECT 1 FROM events n WHERE n.tenant_id = $1 AND n.duplicate_of = e.id AND n.ts >= $2);

-- name: table_contains
-- Whether any row of {table} (of any tenant; the login must bypass row-level security) holds $1 in any value, at
-- any depth of a JSON or array column, as it is. {table} is one of the store's own table names.
SELECT EXISTS (
    SELECT 1 FROM {table} t, jsonb_path_query(to_jsonb(t), 'strict $.**') AS v (value)
    WHERE jsonb_typeof(v.value) NOT IN ('object', 'array') AND strpos(v.value #>> '{}', $1) > 0
);

-- name: server_report
-- What `doctor` reports of the database server: its version, whether pgvector is installed, and the search
-- functions (migrations 0006 and 0008) whose owner row-level security holds: they then read whole tenants instead of
-- using their indexes (docs/deploy.md). No $1.
SELECT current_setting('server_version') AS server_version,
       EXISTS (SELECT FROM pg_extension WHERE extname = 'vector') AS pgvector,
       array(SELECT p.proname::text FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
             WHERE p.prosecdef
               AND p.proname IN ('chunks_matching', 'chunks_tagged', 'decisions_matching', 'lexical_candidates')
               AND NOT (r.rolsuper OR r.rolbypassrls)
             ORDER BY 1) AS unindexed_search;
