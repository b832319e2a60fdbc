-- Full-text search served by its GIN indexes (issue #7). Under row-level security the planner uses an index for a
-- query's own condition only when its operator is leakproof, and neither @@ nor && is: decisions_matching and the
-- lexical and tagged parts of evidence_pool read every decision and chunk of the tenant. These functions do those
-- searches as their owner (SECURITY DEFINER): chunks_matching and chunks_tagged return ids (and ranks), which
-- evidence_pool joins to the chunks under row-level security; decisions_matching returns the decisions, which its
-- query checks against its tenant again.
--
-- Each filters by current_tenant(), the tenant the transaction set, itself: they take no tenant, so a caller cannot
-- name another one, and with no tenant set they find nothing. They see the rows the tenant policy admits and no
-- more (a caller that could set another tenant could read that tenant's rows directly as well). Their search_path is
-- pinned to pg_catalog, the schema of the tables and pg_temp last, so that nothing a caller creates is used in
-- their place; only agent_memory_app (and the owner) may run them.
--
-- The owner is the role that applies this migration. If it is a superuser or has BYPASSRLS, row-level security does
-- not hold it in here and the planner uses the GIN indexes. If not, the forced policies hold it: the results are the
-- same, only no faster than before. So give the migrating role BYPASSRLS (docs/deploy.md).

-- The $3 best chunks (decisions) made by $1 that match $2, best first. Chunks by ts_rank, half the cost of
-- ts_rank_cd over the tens of thousands of matches a common word has in a large tenant: recall ranks the pool
-- again (BM25), this only picks it. PARALLEL RESTRICTED: they run in the leader
-- process, and leave the rest of the calling query free to use parallel workers (the default, unsafe, would not).
CREATE FUNCTION chunks_matching(horizon timestamptz, query tsquery, max_rows integer)
    RETURNS TABLE (id text, rank real)
    LANGUAGE sql STABLE PARALLEL RESTRICTED SECURITY DEFINER
AS $$
    SELECT c.id, ts_rank(c.tsv, $2) AS rank FROM chunks c
    WHERE c.tenant_id = current_tenant() AND c.ts <= $1 AND c.tsv @@ $2
    ORDER BY rank DESC, c.ts DESC, c.id DESC
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
END
$$;

REVOKE ALL ON FUNCTION chunks_matching(timestamptz, tsquery, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION decisions_matching(timestamptz, tsquery, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION chunks_tagged(timestamptz, text[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION chunks_matching(timestamptz, tsquery, integer) TO agent_memory_app;
GRANT EXECUTE ON FUNCTION decisions_matching(timestamptz, tsquery, integer) TO agent_memory_app;
GRANT EXECUTE ON FUNCTION chunks_tagged(timestamptz, text[], integer) TO agent_memory_app;
