-- Which chunk's text each context vector carries (chunks_to_embed gives it; NULL: the vector has no context).
-- Forgetting that chunk drops exactly the vectors that carry its text, even when a chunk written later (an earlier
-- `at`) now stands between the two. Vectors made before this migration have none recorded: their context was the
-- chunk then before them, and forget still drops the vectors of the chunk right after a forgotten one.
ALTER TABLE chunks ADD COLUMN context_chunk_id text;
CREATE INDEX chunks_context_source ON chunks (tenant_id, context_chunk_id) WHERE context_chunk_id IS NOT NULL;
GRANT UPDATE (context_chunk_id) ON chunks TO agent_memory_app;
