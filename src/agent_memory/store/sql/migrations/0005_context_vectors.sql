-- A second vector per chunk: the chunk in its context, i.e. its text followed by the text of the chunk before it
-- in its session (unless that one is more sensitive). `embedding` (the chunk alone) still decides whether a chunk
-- is close in meaning to a query and serves the HNSW search; `context_embedding` helps rank it, so that a reply
-- ("Super good, rich and creamy") is found by a question about what it answers. Same type as `embedding`:
-- vector(384) where pgvector is installed (no index: it is only read for candidates), real[] where it is not.
DO $$
BEGIN
    IF (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
        WHERE attrelid = 'chunks'::regclass AND attname = 'embedding' AND NOT attisdropped) LIKE 'vector%' THEN
        ALTER TABLE chunks ADD COLUMN context_embedding vector(384);
    ELSE
        ALTER TABLE chunks ADD COLUMN context_embedding real[];
    END IF;
END
$$;

-- Chunks embedded before have no context vector: drop their vectors, so that the background embedder makes both
-- at its next sweep (the partial index chunks_unembedded finds them). Until then recall scores those chunks
-- lexically and says so in provenance (candidates_without_vector).
UPDATE chunks SET embedding = NULL, embedding_model = NULL, embedding_dim = NULL WHERE embedding_model IS NOT NULL;

GRANT UPDATE (context_embedding) ON chunks TO agent_memory_app;
