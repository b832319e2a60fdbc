-- Named queries, loaded once by store/queries.py and called by name. $1 is always the tenant id.

-- name: ensure_tenant
INSERT INTO tenants (id) VALUES ($1) ON CONFLICT (id) DO NOTHING;

-- name: lock_text_hash
-- Serialises writers of the same text so exactly one becomes the original and the rest link to it.
SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0));

-- name: find_original
SELECT id FROM events
WHERE tenant_id = $1 AND text_hash = $2 AND duplicate_of IS NULL
ORDER BY id
LIMIT 1;

-- name: insert_event
INSERT INTO events (tenant_id, id, session_id, agent_id, kind, channel, actor, sensitivity, text, text_hash,
                    token_est, tags, refs, importance, pinned, metadata, structured, redactions, duplicate_of,
                    artifact_id, original_chars, truncated, ts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23);

-- name: insert_chunk
INSERT INTO chunks (tenant_id, id, event_id, seq, session_id, kind, channel, sensitivity, text, token_est,
                    importance, pinned, tags, ts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14);

-- name: insert_artifact
INSERT INTO artifacts (tenant_id, id, event_id, mime_type, content, chars, sha256)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: existing_refs
-- Which of the given ids name an event or a decision of this tenant.
SELECT id FROM events WHERE tenant_id = $1 AND id = ANY($2::text[])
UNION ALL
SELECT id FROM decisions WHERE tenant_id = $1 AND id = ANY($2::text[]);

-- name: get_event
SELECT * FROM events WHERE tenant_id = $1 AND id = $2;

-- name: chunk_ids_of_event
SELECT id FROM chunks WHERE tenant_id = $1 AND event_id = $2 ORDER BY seq;

-- name: get_artifact
SELECT * FROM artifacts WHERE tenant_id = $1 AND id = $2;

-- name: insert_decision
INSERT INTO decisions (tenant_id, id, event_id, session_id, agent_id, channel, sensitivity, text, rationale,
                       constraints, alternatives, consequences, scope, confidence, refs, importance, pinned,
                       token_est, supersedes, ts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20);

-- name: get_decision
SELECT * FROM decisions WHERE tenant_id = $1 AND id = $2;

-- name: lock_decision
SELECT * FROM decisions WHERE tenant_id = $1 AND id = $2 FOR UPDATE;

-- name: decision_chain_head
-- Follows superseded_by links from $2 to the decision that is still active (bounded depth).
WITH RECURSIVE chain (id, superseded_by, depth) AS (
    SELECT id, superseded_by, 0 FROM decisions WHERE tenant_id = $1 AND id = $2
    UNION ALL
    SELECT d.id, d.superseded_by, c.depth + 1
    FROM decisions d JOIN chain c ON d.tenant_id = $1 AND d.id = c.superseded_by
    WHERE c.depth < 10000
)
SELECT id FROM chain ORDER BY depth DESC LIMIT 1;

-- name: mark_superseded
UPDATE decisions SET status = 'superseded', superseded_by = $3, superseded_at = $4
WHERE tenant_id = $1 AND id = $2 AND status = 'active';

-- name: decision_statuses
SELECT id, status, superseded_by FROM decisions WHERE tenant_id = $1 AND id = ANY($2::text[]);

-- name: lock_task
SELECT * FROM tasks WHERE tenant_id = $1 AND id = $2 FOR UPDATE;

-- name: insert_task
INSERT INTO tasks (tenant_id, id, title, status, owner, session_id, channel, sensitivity, note, last_event_id,
                   created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11);

-- name: update_task
UPDATE tasks SET title = $3, status = $4, owner = $5, note = $6, last_event_id = $7,
                 updated_at = GREATEST(updated_at, $8)
WHERE tenant_id = $1 AND id = $2;

-- name: get_task
SELECT * FROM tasks WHERE tenant_id = $1 AND id = $2;

-- name: insert_handoff
INSERT INTO handoffs (tenant_id, id, from_agent, to_agent, session_id, task, constraints, decision_ids,
                      required_files, open_questions, refs, token_est, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13);

-- name: get_handoff
SELECT * FROM handoffs WHERE tenant_id = $1 AND id = $2;

-- name: get_view
SELECT * FROM views WHERE tenant_id = $1 AND name = $2;

-- name: list_views
SELECT * FROM views WHERE tenant_id = $1 ORDER BY name;

-- name: set_view
INSERT INTO views AS v (tenant_id, name, body, token_est, updated_by)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tenant_id, name) DO UPDATE
SET body = EXCLUDED.body, token_est = EXCLUDED.token_est, updated_by = EXCLUDED.updated_by,
    version = v.version + 1, updated_at = now()
RETURNING *;

-- name: notify_view_changed
SELECT pg_notify('agent_memory_views', $1 || '/' || $2);

-- name: insert_audit
INSERT INTO audit_log (tenant_id, principal, action, resource_ids, success, latency_ms, request_id, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8);
