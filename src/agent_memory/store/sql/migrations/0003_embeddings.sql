-- Chunk embeddings, filled off the write path by the background embedder (and `reindex --embeddings`).
-- The column itself came with 0001: vector(384) with an HNSW index where pgvector is available, real[] where it
-- is not. Each vector is recorded with its model and dimension: a vector of another model is never compared
-- with the current model's, it is embedded again.
ALTER TABLE chunks ADD COLUMN embedding_dim integer CHECK (embedding_dim > 0);

-- What the embedder has still to do: chunks with no vector yet.
CREATE INDEX chunks_unembedded ON chunks (tenant_id, ts DESC, id DESC) WHERE embedding_model IS NULL;

-- The embedder may set these three columns of a chunk, and nothing else of it.
GRANT UPDATE (embedding, embedding_model, embedding_dim) ON chunks TO agent_memory_app;
