-- Named queries, loaded once by store/queries.py and called by name. $1 is always the tenant id.

-- name: enter_tenant
-- The first statement of every tenant transaction: until it ends, run as agent_memory_app (row-level security
-- holds it, as it would not hold a superuser or the owner) with tenant $1, the only tenant whose rows it sees.
SELECT set_config('role', 'agent_memory_app', true), set_config('agent_memory.tenant', $1, true);

-- name: enter_tenant_to_write
-- enter_tenant for a transaction that writes what a forget may delete (events, decisions, handoffs, views). It also
-- takes the tenant's forget lock, shared, before anything else: a forget in progress (lock_out_writers, exclusive)
-- holds the write until it ends, and a forget waits for the writes in flight. Taken first, while the transaction
-- holds no other lock, it cannot close a cycle of waits. lock_timeout bounds the wait (and every later one).
SELECT set_config('role', 'agent_memory_app', true), set_config('agent_memory.tenant', $1, true),
       set_config('lock_timeout', $2, true), pg_advisory_xact_lock_shared(hashtextextended($1 || ':forget', 0));

-- name: ensure_tenant
-- Creates the tenant's row if it has none; the status says which ("INSERT 0 0": it existed).
INSERT INTO tenants (id) VALUES ($1) ON CONFLICT (id) DO NOTHING;

-- name: lock_text_hashes
-- Serialises writers of the same texts ($2) so that exactly one becomes the original and the rest link to it: the
-- locks are taken in one statement, in one global order, so that concurrent calls sharing texts queue instead of
-- deadlocking.
SELECT count(pg_advisory_xact_lock(hashtextextended($1 || ':' || h, 0)))
FROM (SELECT DISTINCT h FROM unnest($2::text[]) AS h ORDER BY h) AS sorted;

-- name: find_originals
-- For each of the text hashes $2, the original event holding that text (the first recorded), if any.
SELECT DISTINCT ON (text_hash) text_hash, id FROM events
WHERE tenant_id = $1 AND text_hash = ANY($2::text[]) AND duplicate_of IS NULL
ORDER BY text_hash, id;

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
INSERT INTO tasks (tenant_id, id, title, status, owner, session_id, channel, sensitivity, note, token_est,
                   last_event_id, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12);

-- name: update_task
UPDATE tasks SET title = $3, status = $4, owner = $5, note = $6, token_est = $7, last_event_id = $8,
                 updated_at = GREATEST(updated_at, $9)
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

-- ---------------------------------------------------------------------------------------------------------
-- The read path (recall). Every query is bounded by a LIMIT and a time horizon ($2 or $3: as_of, or
-- 'infinity' for now).

-- name: latest_event_ts
SELECT max(ts) FROM events WHERE tenant_id = $1 AND ts <= $2;

-- name: recent_events
SELECT * FROM events
WHERE tenant_id = $1 AND session_id = $2 AND ts <= $3
ORDER BY ts DESC, id DESC
LIMIT $4;

-- name: open_tasks
SELECT * FROM tasks
WHERE tenant_id = $1 AND status IN ('open', 'doing', 'blocked')
ORDER BY updated_at DESC, id
LIMIT $2;

-- name: decisions_as_of
-- Decisions in force at $2 (made by then, not superseded by then), most recent first.
SELECT * FROM decisions
WHERE tenant_id = $1 AND ts <= $2 AND (superseded_at IS NULL OR superseded_at > $2)
ORDER BY ts DESC, id DESC
LIMIT $3;

-- name: decisions_matching
-- Decisions made by $2 whose text, rationale or scope shares a lexeme with the query $3, best first. Found by the
-- function of the same name, which can use the GIN index that row-level security keeps a query from using for @@
-- (see migration 0006), and which returns only the rows of the transaction's tenant; checked against $1 again.
SELECT d.*, ts_rank_cd(d.tsv, $3::tsquery) AS rank FROM decisions_matching($2, $3::tsquery, $4) AS d
WHERE d.tenant_id = $1
ORDER BY rank DESC, d.ts DESC, d.id DESC;

-- name: decisions_by_ids
SELECT * FROM decisions WHERE tenant_id = $1 AND id = ANY($2::text[]);

-- name: agents_awaiting_handoffs
-- The agents with packets pending (the hot set keeps them: a recall of any other agent needs no lookup).
SELECT DISTINCT to_agent FROM handoffs WHERE tenant_id = $1 AND status = 'pending' LIMIT $2;

-- name: pending_handoffs
-- The packets waiting for agent $2, oldest first (read on every recall: they are delivered by the first).
SELECT * FROM handoffs
WHERE tenant_id = $1 AND to_agent = $2 AND status = 'pending'
ORDER BY created_at, id
LIMIT $3;

-- name: delivered_handoffs
-- Packets an earlier recall of session $2 delivered: they keep shaping that session's bundles.
SELECT * FROM handoffs
WHERE tenant_id = $1 AND delivered_session = $2 AND status = 'delivered'
ORDER BY delivered_at DESC, id DESC
LIMIT $3;

-- name: mark_handoffs_delivered
UPDATE handoffs SET status = 'delivered', delivered_at = now(), delivered_session = $3
WHERE tenant_id = $1 AND id = ANY($2::text[]) AND status = 'pending';

-- name: query_terms
-- The query's lexemes (English stemming, stop words removed) and an OR tsquery over them. The one query
-- without a tenant: $1 is the query text.
SELECT coalesce(array_agg(lexeme ORDER BY lexeme), '{}') AS terms,
       coalesce(string_agg(quote_literal(lexeme), ' | ' ORDER BY lexeme), '') AS tsquery
FROM unnest(to_tsvector('english', $1)) AS t (lexeme, positions, weights)
WHERE lexeme ~ '[[:alnum:]]';  -- punctuation such as an em dash is no search term

-- name: notify_change
SELECT pg_notify('agent_memory_changes', $1 || '/' || $2);

-- ---------------------------------------------------------------------------------------------------------
-- Maintenance (reindex).

-- name: count_events
SELECT count(*) FROM events WHERE tenant_id = $1;

-- name: events_after
-- A keyset page of events in id order, for rebuilding what is derived from them.
SELECT * FROM events WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3;

-- name: delete_chunks_of_events
DELETE FROM chunks WHERE tenant_id = $1 AND event_id = ANY($2::text[]);

-- name: task_updates_until
-- The newest task updates made by $2, for replaying the task state of a past moment.
SELECT * FROM events
WHERE tenant_id = $1 AND kind = 'task_update' AND ts <= $2
ORDER BY ts DESC, id DESC
LIMIT $3;

-- name: derived_stale
SELECT derived_stale FROM tenants WHERE id = $1;

-- name: set_derived_stale
UPDATE tenants SET derived_stale = $2 WHERE id = $1;

-- name: events_missing_chunks
-- Events that should have chunks and have none (after derived data was dropped), newest first.
SELECT e.* FROM events e
WHERE e.tenant_id = $1 AND e.duplicate_of IS NULL
  AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.tenant_id = $1 AND c.event_id = e.id)
ORDER BY e.ts DESC, e.id DESC
LIMIT $2;

-- name: notify_everything_changed
SELECT pg_notify('agent_memory_changes', '*/*');

-- name: delete_all_chunks
DELETE FROM chunks WHERE tenant_id = $1;

-- name: sees_every_tenant
-- Whether this login sees every tenant's rows outside a tenant transaction: row-level security is forced, so
-- only a superuser or a BYPASSRLS role does. No tenant: no $1.
SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user;

-- name: superseded_decision_events
-- Which of the events $2 recorded decisions that were superseded by $3.
SELECT event_id FROM decisions
WHERE tenant_id = $1 AND event_id = ANY($2::text[]) AND superseded_at IS NOT NULL AND superseded_at <= $3;

-- ---------------------------------------------------------------------------------------------------------
-- API keys, signed requests and the audit trail's export and retention.

-- name: insert_api_key
INSERT INTO api_keys (tenant_id, id, name, key_hash, roles, agent_id, require_signature)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *;

-- name: list_api_keys
SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id;

-- name: revoke_api_key
-- Revoke key $2 (a revoked key stays revoked: revoking it again keeps the first time).
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE tenant_id = $1 AND id = $2
RETURNING *;

-- name: enter_key_lookup
-- Instead of enter_tenant, for the one transaction that finds key $1 before its tenant is known: as
-- agent_memory_app, with no tenant, row-level security admits only that key's row (policy key_lookup).
SELECT set_config('role', 'agent_memory_app', true), set_config('agent_memory.api_key', $1, true);

-- name: find_api_key
SELECT * FROM api_keys WHERE id = $1;

-- name: touch_api_key
-- Record a key's use, at most once a minute (a write per request would cost every call).
UPDATE api_keys SET last_used_at = now()
WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');

-- name: remember_signature
-- Record signature $2, of a request sent at $3 (seconds since the epoch), as seen if that is within $4 seconds of
-- the database's clock: `timely` says whether it is, `fresh` whether the signature was new (false: a replay).
-- Signatures seen more than twice the window ago are forgotten on the way: a timestamp that old is refused anyway,
-- by the same clock (every replica's own clock may be off, the database's is one).
WITH forgotten AS (
    DELETE FROM request_signatures WHERE tenant_id = $1 AND seen_at < now() - 2 * make_interval(secs => $4::float8)
), clock AS (
    SELECT abs(extract(epoch FROM now())::float8 - $3::float8) <= $4::float8 AS timely
), seen AS (
    INSERT INTO request_signatures (tenant_id, signature) SELECT $1, $2 FROM clock WHERE clock.timely
    ON CONFLICT (tenant_id, signature) DO NOTHING
    RETURNING signature
)
SELECT clock.timely, EXISTS (SELECT FROM seen) AS fresh FROM clock;

-- name: audit_since
-- A page of the tenant's audit trail from $2 on, after row $3, oldest first.
SELECT * FROM audit_log
WHERE tenant_id = $1 AND at >= $2 AND id > $3
ORDER BY id
LIMIT $4;

-- name: purge_audit
-- Audit rows of every tenant older than $1 (maintenance, as a login that bypasses row-level security).
DELETE FROM audit_log WHERE at < $1;

-- ---------------------------------------------------------------------------------------------------------
-- Embeddings (semantic retrieval). The column `embedding` is vector(384) where pgvector is installed and
-- real[] where it is not; a real[] parameter fits both (pgvector casts real[] to vector on assignment).

-- name: embedding_column_type
-- 'vector(384)' with pgvector, 'real[]' without. No tenant: no $1.
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'chunks'::regclass AND attname = 'embedding' AND NOT attisdropped;

-- name: chunks_to_embed
-- Up to $2 chunks without a vector, newest first (the index chunks_unembedded serves it), locked until the
-- transaction stores their vectors: embedders of other processes skip them instead of doing the work twice.
-- Each comes with the text and id of the chunk before it in its session (its context), unless that one is more
-- sensitive: a vector must not carry what a channel that may load its chunk may not see.
SELECT c.id, c.text, CASE WHEN p.allowed THEN p.text END AS context, CASE WHEN p.allowed THEN p.id END AS context_id
FROM chunks c
LEFT JOIN LATERAL (
    SELECT x.id, x.text,
           array_position(ARRAY['none', 'low', 'high'], x.sensitivity)
               <= array_position(ARRAY['none', 'low', 'high', 'secret'], c.sensitivity) AS allowed
    FROM chunks x
    WHERE x.tenant_id = $1 AND x.session_id = c.session_id AND (x.ts, x.event_id, x.seq) < (c.ts, c.event_id, c.seq)
    ORDER BY x.ts DESC, x.event_id DESC, x.seq DESC
    LIMIT 1
) p ON true
WHERE c.tenant_id = $1 AND c.embedding_model IS NULL
ORDER BY c.ts DESC, c.id DESC
LIMIT $2
FOR UPDATE OF c SKIP LOCKED;

-- name: set_embeddings
-- Store vectors ($3: each as a real[] literal) and context vectors ($6, likewise) for chunks $2, made by model $4
-- of dimension $5, with the id of the chunk whose text each context vector carries ($7; NULL: none).
UPDATE chunks c
SET embedding = u.vector::real[], context_embedding = u.context::real[], embedding_model = $4, embedding_dim = $5,
    context_chunk_id = u.source
FROM unnest($2::text[], $3::text[], $6::text[], $7::text[]) AS u (id, vector, context, source)
WHERE c.tenant_id = $1 AND c.id = u.id;

-- name: count_chunks_to_embed
-- Chunks with no vector of model $2 (dimension $3): new ones, and those of another model.
SELECT count(*) FROM chunks
WHERE tenant_id = $1 AND (embedding_model IS NULL OR embedding_model <> $2 OR embedding_dim IS DISTINCT FROM $3);

-- name: forget_other_embeddings
-- Drop vectors made by a model other than $2 (dimension $3), so that they are embedded again.
UPDATE chunks
SET embedding = NULL, context_embedding = NULL, embedding_model = NULL, embedding_dim = NULL, context_chunk_id = NULL
WHERE tenant_id = $1 AND embedding_model IS NOT NULL
  AND (embedding_model <> $2 OR embedding_dim IS DISTINCT FROM $3);

-- name: enter_vector_search
-- Let a filtered HNSW scan keep going until it has found enough rows of this tenant (pgvector >= 0.8).
SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), set_config('hnsw.ef_search', $1, true);

-- name: semantic_neighbours
-- pgvector only: the $5 chunks made by $3 nearest to the query vector $2 (model $4), with their cosine similarity
-- and that of their context vector.
SELECT id, 1 - (embedding <=> $2::real[]::vector) AS similarity,
       1 - (context_embedding <=> $2::real[]::vector) AS context_similarity
FROM chunks
WHERE tenant_id = $1 AND ts <= $3 AND embedding_model = $4
ORDER BY embedding <=> $2::real[]::vector
LIMIT $5;

-- name: similarities
-- pgvector only: the cosine similarity of chunks $2 (and of their context vectors) to the query vector $3, for
-- those with a vector of model $4.
SELECT id, 1 - (embedding <=> $3::real[]::vector) AS similarity,
       1 - (context_embedding <=> $3::real[]::vector) AS context_similarity
FROM chunks
WHERE tenant_id = $1 AND id = ANY($2::text[]) AND embedding_model = $4;

-- name: chunk_vectors
-- Without pgvector: the vectors of chunks $2 made by model $3 with dimension $4, to score in process; in the
-- binary array form (array_send), which is read without building a Python float per element. With each, its
-- context vector (NULL: none).
SELECT id, array_send(embedding) AS embedding, array_send(context_embedding) AS context_embedding FROM chunks
WHERE tenant_id = $1 AND id = ANY($2::text[]) AND embedding_model = $3 AND embedding_dim = $4;

-- name: evidence_pool
-- The bounded candidate pool of hybrid retrieval: the best full-text matches of the query's lexemes $12 (up to $3),
-- the most recent, pinned and tagged chunks ($4 to $7), plus the chunks semantic search found ($8, ids) and the
-- newest chunks inside a time window the query names ($9 to $10, up to $11; none when the window is NULL), all made
-- by $2. Each comes with what scoring and filtering need from its event and decision, the model of its vector (NULL:
-- none yet), which of the lexemes $12 it holds and how many distinct lexemes it has, and the number of the tenant's
-- chunks made by $2, counted up to $13 (BM25 counts document frequencies in the pool, and takes that as the corpus
-- size; beyond it the pool is a sample of the tenant, and counting further would cost more than it tells). The
-- full-text matches come from lexical_candidates, which can use the GIN index (see decisions_matching): in a tenant of
-- $13 chunks or more, any match only among about the newest $14 chunks (the time those $13 newest span, scaled), and
-- older chunks only if they match every lexeme. $15, when not NULL, is where that reach began in a recall of this
-- large tenant made shortly before (the caller keeps it, from the column lexical_since): the newest chunks are
-- then not counted again, and the corpus size is $13. The columns are the fields of rows.Candidate, in its order.
WITH newest AS MATERIALIZED (
    SELECT count(*) AS size, max(n.ts) AS latest, min(n.ts) AS oldest
    FROM (SELECT c.ts FROM chunks c WHERE $15::timestamptz IS NULL AND c.tenant_id = $1 AND c.ts <= $2
          ORDER BY c.ts DESC, c.id DESC LIMIT $13) AS n
), since AS (
    SELECT CASE WHEN $15::timestamptz IS NOT NULL THEN $15::timestamptz
                WHEN size < $13 THEN '-infinity'::timestamptz
                ELSE latest - least((latest - oldest) * ($14::float8 / $13), interval '1000 years') END AS ts,
           CASE WHEN $15::timestamptz IS NOT NULL THEN $13 ELSE size END AS size
    FROM newest
), pool AS (
    (SELECT m.id, m.rank FROM since, lexical_candidates($2, $12::text[], $3, since.ts) AS m
     WHERE cardinality($12::text[]) > 0)
    UNION ALL
    (SELECT c.id, 0 FROM chunks c WHERE c.tenant_id = $1 AND c.ts <= $2 ORDER BY c.ts DESC, c.id DESC LIMIT $4)
    UNION ALL
    (SELECT c.id, 0 FROM chunks c WHERE c.tenant_id = $1 AND c.pinned AND c.ts <= $2
     ORDER BY c.ts DESC, c.id DESC LIMIT $5)
    UNION ALL
    (SELECT t.id, 0 FROM chunks_tagged($2, $6::text[], $7) AS t)
    UNION ALL
    (SELECT c.id, 0 FROM chunks c WHERE c.tenant_id = $1 AND c.id = ANY($8::text[]) AND c.ts <= $2)
    UNION ALL
    (SELECT c.id, 0 FROM chunks c
     WHERE c.tenant_id = $1 AND c.ts >= $9::timestamptz AND c.ts <= least($10::timestamptz, $2)
     ORDER BY c.ts DESC, c.id DESC LIMIT $11)
), best AS (
    SELECT id, max(rank) AS rank FROM pool GROUP BY id
)
SELECT c.id, c.event_id, c.seq, c.session_id, c.kind, c.channel, c.sensitivity, c.text, c.token_est,
       c.importance, c.pinned, c.tags, c.ts, best.rank, e.refs AS event_refs, e.agent_id, e.text_hash,
       d.id AS decision_id, d.status AS decision_status, d.superseded_by, d.superseded_at,
       c.embedding_model, c.embedding_dim, c.matched, c.lexeme_count, corpus.size AS corpus_size, e.actor,
       corpus.ts AS lexical_since
FROM best
-- each candidate's rows looked up by key (LIMIT 1 keeps the planner from joining whole tables instead: with the
-- statistics of a tenant that has just grown tenfold it would, and read the events once per candidate)
CROSS JOIN LATERAL (
    SELECT x.id, x.event_id, x.seq, x.session_id, x.kind, x.channel, x.sensitivity, x.text, x.token_est,
           x.importance, x.pinned, x.tags, x.ts, x.embedding_model, x.embedding_dim,
           -- the query's lexemes it holds: its lexemes, less those that are not the query's
           tsvector_to_array(ts_delete(x.tsv, tsvector_to_array(ts_delete(x.tsv, $12::text[])))) AS matched,
           length(x.tsv) AS lexeme_count
    FROM chunks x WHERE x.tenant_id = $1 AND x.id = best.id LIMIT 1
) c
CROSS JOIN LATERAL (
    SELECT y.refs, y.agent_id, y.text_hash, y.actor FROM events y WHERE y.tenant_id = $1 AND y.id = c.event_id LIMIT 1
) e
LEFT JOIN LATERAL (
    SELECT z.id, z.status, z.superseded_by, z.superseded_at FROM decisions z
    WHERE z.tenant_id = $1 AND z.event_id = c.event_id LIMIT 1
) d ON true
CROSS JOIN since AS corpus;
