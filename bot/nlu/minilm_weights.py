"""The MiniLM model's config and weights, in the layout the forward passes use.

:class:`BertConfig` is what the encoder reads of ``config.json``; :func:`build_weights`
rearranges the safetensors tensors for inference (dense weights as (in, out), the query
part of the fused QKV product pre-scaled). Both forward passes use these: the NumPy and
TensorFlow ones in :mod:`bot.nlu.minilm` and the ONNX graph in :mod:`bot.nlu.minilm_onnx`,
which is why they live below both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np

__all__ = ["BertConfig", "Layer", "MASKED", "Weights", "build_weights"]

MASKED = np.float32(-1e9)
"""Added to the attention scores of padding keys."""


@dataclass(frozen=True)
class BertConfig:
    """The parts of a Hugging Face BERT ``config.json`` that the encoder uses."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    layer_norm_eps: float
    hidden_act: str

    @classmethod
    def from_dict(cls, raw: Dict[str, Any]) -> "BertConfig":
        """Build the config from the parsed ``config.json``.

        Args:
            raw: The JSON object.

        Returns:
            The config.

        Raises:
            ValueError: The model is not a BERT encoder this module can run.
        """
        if raw.get("model_type", "bert") != "bert":
            raise ValueError(f"expected a BERT model, got model_type={raw.get('model_type')!r}")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        config = cls(
            hidden_size=int(raw["hidden_size"]),
            num_hidden_layers=int(raw["num_hidden_layers"]),
            num_attention_heads=int(raw["num_attention_heads"]),
            intermediate_size=int(raw["intermediate_size"]),
            max_position_embeddings=int(raw["max_position_embeddings"]),
            layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
            hidden_act=str(raw.get("hidden_act", "gelu")),
        )
        if config.hidden_act != "gelu":
            raise ValueError(f"only the exact (erf) GELU is supported, got {config.hidden_act!r}")
        if config.hidden_size % config.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        return config


@dataclass(frozen=True)
class Layer:
    """One transformer layer; dense weights are stored as (in, out), C-contiguous."""

    qkv_w: np.ndarray  # (H, 3H); the query part is pre-scaled by 1/sqrt(head_dim)
    qkv_b: np.ndarray  # (3H,)
    attn_out_w: np.ndarray  # (H, H)
    attn_out_b: np.ndarray
    attn_ln_g: np.ndarray
    attn_ln_b: np.ndarray
    inter_w: np.ndarray  # (H, I)
    inter_b: np.ndarray
    out_w: np.ndarray  # (I, H)
    out_b: np.ndarray
    out_ln_g: np.ndarray
    out_ln_b: np.ndarray


@dataclass(frozen=True)
class Weights:
    """The model's tensors in inference layout."""

    word: np.ndarray  # (V, H)
    position: np.ndarray  # (P, H)
    token_type0: np.ndarray  # (H,): every input is a single segment (type 0)
    emb_ln_g: np.ndarray
    emb_ln_b: np.ndarray
    layers: Tuple[Layer, ...]


def _dense(weights: Dict[str, np.ndarray], prefix: str) -> Tuple[np.ndarray, np.ndarray]:
    """Return a PyTorch ``Linear`` (out, in) weight as (in, out) plus its bias."""
    w = np.ascontiguousarray(weights[f"{prefix}.weight"].T, dtype=np.float32)
    b = np.ascontiguousarray(weights[f"{prefix}.bias"], dtype=np.float32)
    return w, b


def _vector(weights: Dict[str, np.ndarray], name: str) -> np.ndarray:
    return np.ascontiguousarray(weights[name], dtype=np.float32)


def build_weights(raw: Dict[str, np.ndarray], config: BertConfig) -> Weights:
    """Rearrange the safetensors tensors for fast inference.

    Args:
        raw: Tensors by their Hugging Face ``BertModel`` names.
        config: The model config.

    Returns:
        The weights in inference layout.

    Raises:
        KeyError: A tensor is missing.
    """
    # "bert." prefixed checkpoints (e.g. BertForMaskedLM) work too.
    if "embeddings.word_embeddings.weight" not in raw:
        raw = {k[len("bert."):]: v for k, v in raw.items() if k.startswith("bert.")}
    scale = np.float32(1.0 / math.sqrt(config.hidden_size // config.num_attention_heads))
    layers: List[Layer] = []
    for index in range(config.num_hidden_layers):
        p = f"encoder.layer.{index}"
        q_w, q_b = _dense(raw, f"{p}.attention.self.query")
        k_w, k_b = _dense(raw, f"{p}.attention.self.key")
        v_w, v_b = _dense(raw, f"{p}.attention.self.value")
        attn_out_w, attn_out_b = _dense(raw, f"{p}.attention.output.dense")
        inter_w, inter_b = _dense(raw, f"{p}.intermediate.dense")
        out_w, out_b = _dense(raw, f"{p}.output.dense")
        layers.append(
            Layer(
                qkv_w=np.ascontiguousarray(np.concatenate([q_w * scale, k_w, v_w], axis=1)),
                qkv_b=np.concatenate([q_b * scale, k_b, v_b]),
                attn_out_w=attn_out_w,
                attn_out_b=attn_out_b,
                attn_ln_g=_vector(raw, f"{p}.attention.output.LayerNorm.weight"),
                attn_ln_b=_vector(raw, f"{p}.attention.output.LayerNorm.bias"),
                inter_w=inter_w,
                inter_b=inter_b,
                out_w=out_w,
                out_b=out_b,
                out_ln_g=_vector(raw, f"{p}.output.LayerNorm.weight"),
                out_ln_b=_vector(raw, f"{p}.output.LayerNorm.bias"),
            )
        )
    return Weights(
        word=_vector(raw, "embeddings.word_embeddings.weight"),
        position=_vector(raw, "embeddings.position_embeddings.weight"),
        token_type0=_vector(raw, "embeddings.token_type_embeddings.weight")[0].copy(),
        emb_ln_g=_vector(raw, "embeddings.LayerNorm.weight"),
        emb_ln_b=_vector(raw, "embeddings.LayerNorm.bias"),
        layers=tuple(layers),
    )
