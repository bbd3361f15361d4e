"""Sentence embeddings from all-MiniLM-L6-v2, computed without PyTorch.

:class:`MiniLMEncoder` runs the BERT encoder of
``sentence-transformers/all-MiniLM-L6-v2`` (6 layers, hidden size 384, 12
heads) as batched float32 matrix products, then mean-pools the last hidden
states over the non-padding word pieces and L2-normalises the result, as the
sentence-transformers model does. Three implementations of the forward pass give
the same numbers: ONNX Runtime (the default where ``onnx`` and ``onnxruntime`` are
installed, as ``requirements.lock`` does: :mod:`bot.nlu.minilm_onnx`), TensorFlow
(installed with Rasa) and NumPy (the reference and last fallback). ``num_layers`` runs
only the first layers of the model (faster, different embeddings). Word pieces
come from the model's own ``tokenizer.json`` (Hugging Face ``tokenizers``),
truncated to ``max_length`` pieces including ``[CLS]`` and ``[SEP]``.

The model directory is the one filled by ``scripts/fetch_embedding_model.py``
(``make setup``); :mod:`bot.settings` names it ``EMBEDDING_MODEL_DIR``.

Example::

    encoder = MiniLMEncoder.load(get_settings().embedding_model_dir)
    vectors = encoder.encode(["where is my order?", "cancel it"])  # (2, 384)

An encoder is immutable once loaded: :meth:`MiniLMEncoder.encode` and friends
keep all intermediate arrays local, so one instance can serve concurrent
callers from several threads.
"""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from scipy.special import erf

from bot.nlu.minilm_weights import MASKED, BertConfig, Weights, build_weights

DEFAULT_MAX_LENGTH = 128
"""Word pieces per text, ``[CLS]`` and ``[SEP]`` included (the model's training length)."""

REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class ModelFilesMissingError(FileNotFoundError):
    """The model directory lacks a file the encoder needs."""


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis (returns a new array)."""
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = np.mean(np.square(centered), axis=-1, keepdims=True)
    centered *= 1.0 / np.sqrt(var + np.float32(eps))
    centered *= gamma
    centered += beta
    return centered


def _gelu_(x: np.ndarray) -> np.ndarray:
    """Exact GELU, ``x * Phi(x)`` with erf as in BERT, computed in place."""
    t = x * np.float32(1.0 / math.sqrt(2.0))
    erf(t, out=t)
    t += np.float32(1.0)
    t *= np.float32(0.5)
    x *= t
    return x


BACKENDS = ("auto", "onnxruntime", "tensorflow", "numpy")
"""Forward passes: ``auto`` picks ONNX Runtime, else TensorFlow, else NumPy."""
"""Forward-pass implementations: ``auto`` is TensorFlow when it is installed, else NumPy."""


def _tensorflow_available() -> bool:
    """Return whether TensorFlow can be imported (it is, wherever Rasa is installed)."""
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


class _TensorFlowForward:
    """The same BERT forward pass as :meth:`MiniLMEncoder._forward_numpy`, in TensorFlow.

    One ``tf.function`` traced once for any batch size and length (dynamic
    shapes), with the weights as graph constants. On the 2-core development
    machine TensorFlow's CPU kernels run the small matrix products of one
    message 2-3 times faster than NumPy's OpenBLAS (see ``docs/nlu.md``).
    Calling it from several threads at once is safe.
    """

    def __init__(self, weights: Weights, config: BertConfig) -> None:
        """Copy the weights into TensorFlow constants and trace the graph.

        XLA (``jit_compile=True``) is not used: it compiles once per input shape,
        which cost 20-30 s over the first 100 messages and slowed batches 4x.

        Args:
            weights: The weights in inference layout (only the layers to run).
            config: The model config.
        """
        import tensorflow as tf

        self._tf = tf
        hidden_size = config.hidden_size
        heads = config.num_attention_heads
        head_dim = hidden_size // heads
        eps = float(config.layer_norm_eps)
        const = tf.constant
        word = const(weights.word)
        position = const(weights.position)
        token_type0 = const(weights.token_type0)
        emb_ln = (const(weights.emb_ln_g), const(weights.emb_ln_b))
        layers = [
            tuple(
                const(getattr(layer, name))
                for name in (
                    "qkv_w", "qkv_b", "attn_out_w", "attn_out_b", "attn_ln_g", "attn_ln_b",
                    "inter_w", "inter_b", "out_w", "out_b", "out_ln_g", "out_ln_b",
                )
            )
            for layer in weights.layers
        ]

        def layer_norm(x: Any, gamma: Any, beta: Any) -> Any:
            mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
            return (x - mean) * tf.math.rsqrt(var + eps) * gamma + beta

        def forward(ids: Any, mask: Any) -> Any:
            batch = tf.shape(ids)[0]
            length = tf.shape(ids)[1]
            x = tf.gather(word, ids) + position[:length] + token_type0
            x = tf.reshape(layer_norm(x, *emb_ln), [batch * length, hidden_size])
            key_bias = tf.reshape((1.0 - mask) * float(MASKED), [batch, 1, 1, length])
            for (
                qkv_w, qkv_b, attn_out_w, attn_out_b, attn_ln_g, attn_ln_b,
                inter_w, inter_b, out_w, out_b, out_ln_g, out_ln_b,
            ) in layers:
                qkv = tf.matmul(x, qkv_w) + qkv_b
                qkv = tf.transpose(
                    tf.reshape(qkv, [batch, length, 3, heads, head_dim]), [2, 0, 3, 1, 4]
                )
                scores = tf.matmul(qkv[0], qkv[1], transpose_b=True) + key_bias
                context = tf.matmul(tf.nn.softmax(scores, axis=-1), qkv[2])
                context = tf.reshape(
                    tf.transpose(context, [0, 2, 1, 3]), [batch * length, hidden_size]
                )
                x = layer_norm(tf.matmul(context, attn_out_w) + attn_out_b + x, attn_ln_g, attn_ln_b)
                inter = tf.nn.gelu(tf.matmul(x, inter_w) + inter_b, approximate=False)
                x = layer_norm(tf.matmul(inter, out_w) + out_b + x, out_ln_g, out_ln_b)
            return tf.reshape(x, [batch, length, hidden_size])

        # Traced once for any batch size and length; calling the concrete function
        # skips tf.function's per-call signature matching (~1 ms a message).
        self._function = tf.function(
            forward,
            input_signature=[
                tf.TensorSpec([None, None], tf.int32),
                tf.TensorSpec([None, None], tf.float32),
            ],
            autograph=False,  # plain Python loop over the layers, nothing to convert
        ).get_concrete_function()

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Run the encoder; see :meth:`MiniLMEncoder._forward_numpy`."""
        tf = self._tf
        return self._function(
            tf.constant(ids, dtype=tf.int32), tf.constant(mask, dtype=tf.float32)
        ).numpy()


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence encoder (ONNX Runtime, TensorFlow or NumPy forward pass).

    Build it with :meth:`load`. Instances are immutable and thread-safe.
    """

    def __init__(
        self,
        tokenizer: Any,
        weights: Weights,
        config: BertConfig,
        max_length: int = DEFAULT_MAX_LENGTH,
        backend: str = "numpy",
    ) -> None:
        """Wrap loaded parts; use :meth:`load` instead of calling this directly.

        Args:
            tokenizer: A ``tokenizers.Tokenizer`` with truncation to ``max_length``
                and padding disabled.
            weights: The weights in inference layout (the layers to run).
            config: The model config.
            max_length: Word pieces per text, special tokens included.
            backend: ``"onnxruntime"``, ``"tensorflow"`` or ``"numpy"`` (see :data:`BACKENDS`).

        Raises:
            ValueError: Unknown backend.
        """
        if backend not in ("numpy", "tensorflow", "onnxruntime"):
            raise ValueError(
                f"backend must be 'onnxruntime', 'tensorflow' or 'numpy', got {backend!r}"
            )
        self._tokenizer = tokenizer
        self._config = config
        self._max_length = max_length
        self._heads = config.num_attention_heads
        self._head_dim = config.hidden_size // config.num_attention_heads
        self._backend = backend
        self._compiled_forward: Optional[Any] = None
        if backend == "tensorflow":
            self._compiled_forward = _TensorFlowForward(weights, config)
        elif backend == "onnxruntime":
            from bot.nlu.minilm_onnx import OnnxForward

            self._compiled_forward = OnnxForward(weights, config)
        # A compiled pass holds its own copy of the weights: keep one copy only.
        self._weights: Optional[Weights] = None if self._compiled_forward is not None else weights

    @classmethod
    def load(
        cls,
        model_dir: Path,
        max_length: int = DEFAULT_MAX_LENGTH,
        backend: str = "auto",
        num_layers: Optional[int] = None,
    ) -> "MiniLMEncoder":
        """Load the model from a Hugging Face model directory.

        Args:
            model_dir: Directory with ``config.json``, ``model.safetensors`` and
                ``tokenizer.json``.
            max_length: Truncate texts to this many word pieces (special tokens
                included); at most the model's ``max_position_embeddings``.
            backend: ``"onnxruntime"``, ``"tensorflow"``, ``"numpy"`` or ``"auto"``
                (ONNX Runtime when ``onnx`` and ``onnxruntime`` import, else TensorFlow
                when it imports, else NumPy). All compute the same embeddings (float32).
            num_layers: Run only the first ``num_layers`` transformer layers
                (default: all six). Fewer layers are faster but give different
                embeddings than the published model.

        Returns:
            The encoder.

        Raises:
            ModelFilesMissingError: A required file is missing.
            ValueError: The model, ``max_length``, ``backend`` or ``num_layers``
                is not supported.
        """
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        model_dir = Path(model_dir)
        missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
        if missing:
            raise ModelFilesMissingError(
                f"MiniLM model files missing in {model_dir}: {', '.join(missing)}. "
                "Run `make setup` (or `python scripts/fetch_embedding_model.py`) to fetch them."
            )
        config = BertConfig.from_dict(
            json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        )
        if not 2 <= max_length <= config.max_position_embeddings:
            raise ValueError(
                f"max_length must be in [2, {config.max_position_embeddings}], got {max_length}"
            )
        if num_layers is not None:
            if not 1 <= num_layers <= config.num_hidden_layers:
                raise ValueError(
                    f"num_layers must be in [1, {config.num_hidden_layers}], got {num_layers}"
                )
            config = replace(config, num_hidden_layers=num_layers)
        weights = build_weights(load_file(str(model_dir / "model.safetensors")), config)
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=max_length)
        tokenizer.no_padding()  # batches are padded here, after sorting by length
        if backend == "auto":
            from bot.nlu.minilm_onnx import onnxruntime_available

            if onnxruntime_available():
                backend = "onnxruntime"
            else:
                backend = "tensorflow" if _tensorflow_available() else "numpy"
        return cls(tokenizer, weights, config, max_length, backend)

    @property
    def dim(self) -> int:
        """Size of an embedding (384)."""
        return self._config.hidden_size

    @property
    def backend(self) -> str:
        """The forward pass in use: ``"onnxruntime"``, ``"tensorflow"`` or ``"numpy"``."""
        return self._backend

    @property
    def num_layers(self) -> int:
        """Transformer layers run (6 for the full model)."""
        return self._config.num_hidden_layers

    @property
    def max_length(self) -> int:
        """Word pieces per text after truncation, special tokens included."""
        return self._max_length

    def count_tokens(self, text: str) -> int:
        """Return how many word pieces ``text`` becomes (after truncation).

        Args:
            text: The text.

        Returns:
            The number of pieces, ``[CLS]`` and ``[SEP]`` included.
        """
        return len(self._tokenizer.encode(text).ids)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts.

        Args:
            texts: The texts (any number, including none).
            batch_size: Texts per forward pass. Texts are sorted by length
                first so that batches need little padding; the output keeps
                the input order.

        Returns:
            float32 array of shape ``(len(texts), 384)``; rows have unit L2 norm.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for rows, hidden, mask in self._run(texts, batch_size):
            out[rows] = self._pool(hidden, mask)
        return out

    def encode_one(self, text: str) -> np.ndarray:
        """Embed one text.

        Args:
            text: The text.

        Returns:
            float32 array of shape ``(384,)`` with unit L2 norm.
        """
        return self.encode([text])[0]

    def encode_with_spans(
        self,
        texts: Sequence[str],
        spans: Sequence[Sequence[Tuple[int, int]]],
        batch_size: int = 64,
    ) -> Tuple[np.ndarray, List[np.ndarray]]:
        """Embed texts, plus one contextual vector per character span.

        A span's vector is the mean of the last hidden states of the word
        pieces that overlap it (not normalised), e.g. the pieces of a word
        found by another tokenizer. A span without pieces (whitespace only, or
        cut off by truncation) gets a zero vector.

        Args:
            texts: The texts.
            spans: For each text, ``(start, end)`` character offsets.
            batch_size: As for :meth:`encode`.

        Returns:
            The sentence embeddings (as :meth:`encode`) and, per text, a float32
            array of shape ``(len(spans[i]), 384)``.

        Raises:
            ValueError: ``texts`` and ``spans`` differ in length.
        """
        if len(texts) != len(spans):
            raise ValueError(f"{len(texts)} texts but {len(spans)} span lists")
        sentences = np.zeros((len(texts), self.dim), dtype=np.float32)
        tokens: List[np.ndarray] = [np.zeros((0, self.dim), np.float32)] * len(texts)
        for rows, hidden, mask, encodings in self._run(texts, batch_size, with_encodings=True):
            sentences[rows] = self._pool(hidden, mask)
            for offset, (row, encoding) in enumerate(zip(rows, encodings)):
                tokens[row] = self._span_vectors(hidden[offset], encoding, spans[row])
        return sentences, tokens

    # -- internals -----------------------------------------------------------------

    def _run(
        self, texts: Sequence[str], batch_size: int, with_encodings: bool = False
    ) -> Iterator[Any]:
        """Tokenize, sort by length and yield ``(rows, hidden, mask[, encodings])``.

        ``rows`` are the input positions of the batch, ``hidden`` the last
        hidden states ``(B, L, H)`` and ``mask`` the ``(B, L)`` float32 mask of
        real (non-padding) pieces.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not texts:
            return
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = int(lengths[rows].max())
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.float32)
            for i, row in enumerate(rows):
                n = int(lengths[row])
                ids[i, :n] = encodings[row].ids
                mask[i, :n] = 1.0
            hidden = self._forward(ids, mask)
            if with_encodings:
                yield rows, hidden, mask, [encodings[row] for row in rows]
            else:
                yield rows, hidden, mask

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Run the BERT encoder with the configured backend (arguments as below)."""
        if self._compiled_forward is not None:
            return self._compiled_forward(ids, mask)
        return self._forward_numpy(ids, mask)

    def _forward_numpy(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Run the BERT encoder in NumPy.

        Args:
            ids: ``(B, L)`` word piece ids, right-padded.
            mask: ``(B, L)`` 1.0 for real pieces, 0.0 for padding.

        Returns:
            The last hidden states, float32 ``(B, L, H)``.
        """
        w = self._weights
        if w is None:
            raise RuntimeError("this encoder runs on TensorFlow; load one with backend='numpy'")
        eps = self._config.layer_norm_eps
        batch, length = ids.shape
        hidden_size, heads, head_dim = self.dim, self._heads, self._head_dim

        x = w.word[ids]  # (B, L, H), a fresh array
        x += w.position[:length]
        x += w.token_type0
        x = _layer_norm(x.reshape(batch * length, hidden_size), w.emb_ln_g, w.emb_ln_b, eps)

        key_bias = ((1.0 - mask) * MASKED).astype(np.float32)[:, None, None, :]  # (B,1,1,L)
        for layer in w.layers:
            qkv = x @ layer.qkv_w
            qkv += layer.qkv_b
            # (B*L, 3H) -> (3, B, heads, L, head_dim)
            qkv = qkv.reshape(batch, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = q @ k.transpose(0, 1, 3, 2)  # (B, heads, L, L), already scaled
            scores += key_bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, hidden_size)

            attn = context @ layer.attn_out_w
            attn += layer.attn_out_b
            attn += x
            x = _layer_norm(attn, layer.attn_ln_g, layer.attn_ln_b, eps)

            inter = x @ layer.inter_w
            inter += layer.inter_b
            _gelu_(inter)
            out = inter @ layer.out_w
            out += layer.out_b
            out += x
            x = _layer_norm(out, layer.out_ln_g, layer.out_ln_b, eps)
        return x.reshape(batch, length, hidden_size)

    @staticmethod
    def _pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Mean over real pieces (special tokens included), then L2-normalise."""
        summed = np.einsum("bld,bl->bd", hidden, mask)
        counts = np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        pooled = summed / counts
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)

    def _span_vectors(
        self, hidden: np.ndarray, encoding: Any, spans: Sequence[Tuple[int, int]]
    ) -> np.ndarray:
        """Average the hidden states of the pieces overlapping each span."""
        if len(spans) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        n = len(encoding.ids)
        offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(n, 2)
        real = np.asarray(encoding.special_tokens_mask, dtype=bool) == 0
        bounds = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
        overlap = (
            (offsets[None, :, 0] < bounds[:, None, 1])
            & (offsets[None, :, 1] > bounds[:, None, 0])
            & real[None, :]
        ).astype(np.float32)  # (spans, pieces)
        counts = np.maximum(overlap.sum(axis=1, keepdims=True), 1.0)
        return (overlap @ hidden[:n]) / counts
