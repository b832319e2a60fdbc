-- Full-text candidates whose cost does not grow with a tenant's whole history (issue #7). chunks_matching ranks every
-- match of every query lexeme: at a million chunks a query of four rare words matched 18,000 chunks, each read from
-- the table to be ranked, and a common word 250,000 (the GIN index alone took 37 ms to list them).
-- lexical_candidates bounds that work while keeping what ranks best:
--   - chunks made since `since` (evidence_pool passes about the newest 100,000 chunks of a large tenant, and
--     '-infinity' for any other) that match any of the terms, ranked as chunks_matching ranks them;
--   - older chunks only if they match every term (the GIN index intersects the terms' matches itself), and not at all
--     for a query of only common terms (below);
--   - in a large tenant, a term in more than 2% of all chunks (by the table's statistics, which all tenants share:
--     none before ANALYZE, and none for an owner that row-level security holds) finds no chunks by itself: its
--     matches are many, each weighs little in BM25 (recall ranks the pool again), and the other terms still find the
--     chunks that hold it as well. A query of only such terms searches the newest chunks with all of them.
-- Semantic search still covers the whole history. chunks_matching stays for servers of the previous version during a
-- rolling upgrade; a later migration drops it. Security as for chunks_matching (0006): it keeps to the transaction's
-- tenant itself, its search_path is pinned, and only agent_memory_app may run it.
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

DO $$
DECLARE
    schema text := (SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = 'chunks'::regclass);
BEGIN
    EXECUTE format('ALTER FUNCTION lexical_candidates(timestamptz, text[], integer, timestamptz) '
                   'SET search_path = pg_catalog, %s, pg_temp', schema);
END
$$;

REVOKE ALL ON FUNCTION lexical_candidates(timestamptz, text[], integer, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lexical_candidates(timestamptz, text[], integer, timestamptz) TO agent_memory_app;
