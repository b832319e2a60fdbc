"""The embedding model: offline, verified, and it puts paraphrases closer together than unrelated text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent_memory.embeddings.model import DIMENSION, MODEL_ID, RUN_TOKENS, Embedder, ModelUnavailable, _runs, cosine


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder().load()


def test_paraphrases_are_closer_than_unrelated_text(embedder: Embedder) -> None:
    """A paraphrase sharing almost no words is nearer than an unrelated sentence, for several pairs."""
    cases = [
        (
            "We decided to move the database to PostgreSQL.",
            "The team chose Postgres as the new data store.",
            "My sister adopted a puppy last weekend.",
        ),
        (
            "I went to a support group for transgender people.",
            "She attended a meeting of an LGBTQ help circle.",
            "The quarterly revenue grew by four percent.",
        ),
        (
            "Where did you go on holiday?",
            "Which place did you visit during your vacation?",
            "Please restart the build server.",
        ),
    ]
    for text, paraphrase, unrelated in cases:
        vectors = embedder.embed([text, paraphrase, unrelated])
        near, far = cosine(vectors[0], vectors[1:])
        assert near > far + 0.2, (text, near, far)


def test_vectors_are_unit_length_and_deterministic(embedder: Embedder) -> None:
    """Each text gives a 384-float unit vector, the same one alone or in a batch (to rounding)."""
    batch = embedder.embed(["short", "a much longer sentence about something else entirely", ""])
    assert batch.shape == (3, DIMENSION)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    alone = embedder.embed_one("short")
    assert float(cosine(alone, batch[:1])[0]) > 0.9999
    assert embedder.embed([]).shape == (0, DIMENSION)
    assert MODEL_ID == "all-MiniLM-L6-v2-onnx-int8"


def test_a_model_file_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    """The model file's sha256 is checked before it is run; a missing file is a clear error too."""
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not a model")
    with pytest.raises(ModelUnavailable, match="sha256"):
        Embedder(model_path=fake).load()
    with pytest.raises(ModelUnavailable, match="does not exist"):
        Embedder(model_path=tmp_path / "missing.onnx").load()


def test_a_batch_of_long_texts_is_cut_into_bounded_runs(embedder: Embedder) -> None:
    """The model's memory grows with a run's size times its length: similar lengths run together, no run holds more
    than ``RUN_TOKENS`` padded tokens, and the vectors are the same as one text at a time, in the input's order."""
    texts = [("word " * n).strip() for n in (300, 3, 120, 40, 250, 7, 300, 90, 60, 200, 5, 180)]
    tokens = [encoding.ids for encoding in embedder._tokenizer.encode_batch(texts)]
    runs = _runs(tokens)
    assert sorted(i for run in runs for i in run) == list(range(len(texts)))
    assert len(runs) > 1
    for run in runs:
        assert len(run) == 1 or len(run) * max(len(tokens[i]) for i in run) <= RUN_TOKENS
    batch = embedder.embed(texts)
    for text, vector in zip(texts, batch, strict=True):
        assert float(cosine(embedder.embed_one(text), vector[None, :])[0]) > 0.9999
