"""An on-disk cache of sentence embeddings for retraining after small data edits.

Conversation designers retrain after changing a few examples; Rasa's own training cache
cannot help then (the training data changed, so every NLU component runs again), and the
encoder would embed all ~9,000 examples again. :class:`EmbeddingCache` keeps the sentence
vectors of the last training run in one file per encoder identity (the model files, the
layer count and the length limit), so the next run embeds only the new texts.

The file holds exactly the texts of the last run (it never grows past the training data),
written atomically (temporary file + rename), as plain arrays (``.npz`` without pickles).
A missing, unreadable or mismatched file is ignored with a warning: the vectors are then
computed, never guessed. Cached vectors come from earlier batches, so they can differ
from a fresh computation by float32 rounding (< 1e-6), not more.

Only the training path uses it (``MiniLMFeaturizer.process_training_data``); parsing
never touches the disk. ``EMBEDDING_CACHE_DIR=off`` disables it (the benchmarks do, to
measure training from scratch).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_MODEL_FILES = ("config.json", "tokenizer.json", "model.safetensors")


def encoder_key(model_dir: Path, num_layers: int, max_length: int) -> str:
    """A digest of everything that decides an embedding: model files, depth, length limit.

    Args:
        model_dir: The model directory (its ``config.json``, ``tokenizer.json`` and
            ``model.safetensors`` are hashed).
        num_layers: Transformer layers run.
        max_length: Word pieces per text.

    Returns:
        A hex digest (used as the cache file name).
    """
    digest = hashlib.sha256(f"v{FORMAT_VERSION}|{num_layers}|{max_length}".encode())
    for name in _MODEL_FILES:
        path = Path(model_dir) / name
        digest.update(name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:32]


class EmbeddingCache:
    """Sentence vectors by text for one encoder identity, stored in ``<dir>/<key>.npz``.

    Args:
        directory: The cache directory (created on save).
        key: The encoder identity (:func:`encoder_key`).
        dim: The embedding size.
    """

    def __init__(self, directory: Path, key: str, dim: int) -> None:
        self.path = Path(directory) / f"{key}.npz"
        self._dim = dim
        self._vectors: Dict[str, np.ndarray] = self._read()

    def __len__(self) -> int:
        return len(self._vectors)

    def _read(self) -> Dict[str, np.ndarray]:
        if not self.path.is_file():
            return {}
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                texts = json.loads(bytes(archive["texts"]).decode("utf-8"))
                vectors = np.asarray(archive["vectors"], dtype=np.float32)
            if (not isinstance(texts, list) or vectors.ndim != 2
                    or vectors.shape != (len(texts), self._dim)):
                raise ValueError(f"shape {vectors.shape} for {len(texts)} texts")
            return {str(text): vectors[i] for i, text in enumerate(texts)}
        except Exception as error:  # noqa: BLE001 - any broken file means "recompute"
            logger.warning("Ignoring the embedding cache %s (%s); recomputing.", self.path, error)
            return {}

    def lookup(self, texts: Sequence[str]) -> Tuple[np.ndarray, List[int]]:
        """Vectors of the cached texts and the positions of the others.

        Args:
            texts: The texts.

        Returns:
            A ``(len(texts), dim)`` array (zeros where missing) and the missing positions.
        """
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        missing: List[int] = []
        for i, text in enumerate(texts):
            vector = self._vectors.get(text)
            if vector is None:
                missing.append(i)
            else:
                out[i] = vector
        return out, missing

    def save(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Replace the file with exactly these texts and vectors (atomically).

        Errors are logged, never raised: a cache must not fail a training run.
        """
        unique: Dict[str, int] = {}
        for i, text in enumerate(texts):
            unique.setdefault(text, i)
        rows = np.fromiter(unique.values(), dtype=np.int64, count=len(unique))
        payload = json.dumps(list(unique), ensure_ascii=False).encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".embeddings-", suffix=".npz",
                                       dir=str(self.path.parent))
            try:
                with os.fdopen(fd, "wb") as handle:
                    np.savez(handle, texts=np.frombuffer(payload, dtype=np.uint8),
                             vectors=np.asarray(vectors, dtype=np.float32)[rows])
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as error:
            logger.warning("Could not write the embedding cache %s: %s", self.path, error)
            return
        self._vectors = {text: np.asarray(vectors[i], dtype=np.float32)
                         for text, i in unique.items()}
