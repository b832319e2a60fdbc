"""Semantic retrieval: a small offline sentence embedding model and the background worker that embeds chunks.

- ``model``: ``Embedder`` (all-MiniLM-L6-v2, int8 ONNX on onnxruntime; 384 dimensions), ``MODEL_ID``.
- ``worker``: ``run_embedder`` embeds new chunks in bounded batches, off the write path.
"""
