"""The MiniLM forward pass as an ONNX graph, run by ONNX Runtime.

The graph is built here, from the weights :mod:`bot.nlu.minilm` loads (in the layout of
:mod:`bot.nlu.minilm_weights`; no exported model file, no PyTorch): the same operations as
the NumPy reference pass (fused QKV product with the query pre-scaled, all heads in one
batched product, exact erf GELU,
``LayerNormalization``), with dynamic batch size and length. ONNX Runtime's CPU
kernels and its low per-operator overhead make one message 2-2.5 times faster than
the TensorFlow pass on the 2-core development machine (docs/nlu.md, "Speed and
memory"), with the same numbers (within 2e-7).

The ``onnx`` package is used only to write the graph (``onnx.helper``);
``onnxruntime`` runs it. Both are imported when a pass is built, never at import time.
"""
from __future__ import annotations

import importlib.util
from typing import Any, List, Optional

import numpy as np

from bot.nlu.minilm_weights import MASKED, BertConfig, Weights

OPSET = 17
"""ONNX opset: 17 is the first with ``LayerNormalization``."""

IR_VERSION = 8
"""The model's IR version (ONNX 1.10+; every supported ONNX Runtime reads it)."""


def onnxruntime_available() -> bool:
    """Return whether both ``onnx`` (to build) and ``onnxruntime`` (to run) import."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


class _GraphBuilder:
    """Collects nodes and initializers; every node gets a fresh output name."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self._helper = helper
        self._numpy_helper = numpy_helper
        self.nodes: List[Any] = []
        self.initializers: List[Any] = []
        self._count = 0

    def const(self, name: str, value: Any, dtype: Any = np.float32) -> str:
        """Add a constant tensor and return its name."""
        array = np.asarray(value, dtype=dtype)
        if array.ndim:  # (np.ascontiguousarray would turn a scalar into shape (1,))
            array = np.ascontiguousarray(array)
        self.initializers.append(self._numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        """Add a node with one output and return the output's name."""
        self._count += 1
        output = f"{op_type.lower()}_{self._count}"
        self.nodes.append(self._helper.make_node(op_type, list(inputs), [output], **attributes))
        return output


def build_model(weights: Weights, config: BertConfig) -> bytes:
    """Serialise the encoder as an ONNX model.

    Inputs: ``embeddings`` (float32, ``(B, L, H)``: word + position + token type 0
    embeddings, summed by :class:`OnnxForward` in NumPy, so that the 47 MB word table is
    not copied into the graph and the session) and ``mask`` (float32, ``(B, L)``, 1.0 for
    real pieces). Output: ``hidden`` (float32, ``(B, L, H)``), the last hidden states.

    Args:
        weights: The weights in inference layout (only the layers to run).
        config: The model config.

    Returns:
        The serialised ``ModelProto``.
    """
    from onnx import TensorProto, helper

    g = _GraphBuilder()
    hidden_size = config.hidden_size
    heads = config.num_attention_heads
    head_dim = hidden_size // heads
    eps = float(config.layer_norm_eps)
    i64 = np.int64

    def layer_norm(x: str, gamma: np.ndarray, beta: np.ndarray, name: str) -> str:
        return g.op("LayerNormalization", x, g.const(f"{name}.gamma", gamma),
                    g.const(f"{name}.beta", beta), axis=-1, epsilon=eps)

    x = layer_norm("embeddings", weights.emb_ln_g, weights.emb_ln_b, "embeddings")

    # Padding keys get -1e9 before the softmax: (1 - mask) * -1e9, shape (B, 1, 1, L).
    key_bias = g.op("Mul", g.op("Sub", g.const("one_f", 1.0), "mask"),
                    g.const("masked", MASKED))
    key_bias = g.op("Unsqueeze", key_bias, g.const("axes12", [1, 2], i64))
    split_heads = g.const("split_heads", [0, 0, 3, heads, head_dim], i64)
    merge_heads = g.const("merge_heads", [0, 0, hidden_size], i64)
    half = g.const("half", 0.5)
    one = g.const("one_gelu", 1.0)
    inv_sqrt2 = g.const("inv_sqrt2", 1.0 / np.sqrt(2.0))
    picks = [g.const(f"pick{i}", i, i64) for i in range(3)]

    for index, layer in enumerate(weights.layers):
        p = f"layer{index}"
        qkv = g.op("Add", g.op("MatMul", x, g.const(f"{p}.qkv_w", layer.qkv_w)),
                   g.const(f"{p}.qkv_b", layer.qkv_b))
        # (B, L, 3H) -> (3, B, heads, L, head_dim)
        qkv = g.op("Transpose", g.op("Reshape", qkv, split_heads), perm=[2, 0, 3, 1, 4])
        q, k, v = (g.op("Gather", qkv, pick, axis=0) for pick in picks)
        scores = g.op("Add", g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2])),
                      key_bias)
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), merge_heads)
        attention = g.op("Add", g.op("MatMul", context, g.const(f"{p}.attn_out_w", layer.attn_out_w)),
                         g.const(f"{p}.attn_out_b", layer.attn_out_b))
        x = layer_norm(g.op("Add", attention, x), layer.attn_ln_g, layer.attn_ln_b, f"{p}.attn_ln")
        inter = g.op("Add", g.op("MatMul", x, g.const(f"{p}.inter_w", layer.inter_w)),
                     g.const(f"{p}.inter_b", layer.inter_b))
        # exact GELU: 0.5 * x * (1 + erf(x / sqrt(2))); ONNX Runtime fuses the pattern
        gelu = g.op("Mul", g.op("Mul", inter, half),
                    g.op("Add", g.op("Erf", g.op("Mul", inter, inv_sqrt2)), one))
        out = g.op("Add", g.op("MatMul", gelu, g.const(f"{p}.out_w", layer.out_w)),
                   g.const(f"{p}.out_b", layer.out_b))
        x = layer_norm(g.op("Add", out, x), layer.out_ln_g, layer.out_ln_b, f"{p}.out_ln")
    g.nodes.append(helper.make_node("Identity", [x], ["hidden"]))

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT,
                                       ["batch", "length", hidden_size]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "length"])],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT,
                                       ["batch", "length", hidden_size])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="bot.nlu.minilm_onnx")
    model.ir_version = IR_VERSION
    return model.SerializeToString()


class OnnxForward:
    """The encoder's forward pass in an ONNX Runtime session (CPU).

    One session per encoder; ``run`` may be called from several threads at once
    (ONNX Runtime sessions are thread-safe). The session's threads do not spin
    between calls, so an idle parser leaves the cores to the other processes.
    """

    def __init__(self, weights: Weights, config: BertConfig,
                 threads: Optional[int] = None) -> None:
        """Build the graph and open the session.

        Args:
            weights: The weights in inference layout (only the layers to run).
            config: The model config.
            threads: Intra-op threads (``None``: ONNX Runtime's default, one per
                physical core).
        """
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only
        self._session = onnxruntime.InferenceSession(
            build_model(weights, config), options, providers=["CPUExecutionProvider"]
        )
        # The embedding lookup stays in NumPy (one gather and two adds per message).
        self._word = weights.word
        self._position = weights.position
        self._token_type0 = weights.token_type0

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Run the encoder; see :meth:`bot.nlu.minilm.MiniLMEncoder._forward_numpy`."""
        embeddings = self._word[ids]  # (B, L, H), a fresh array
        embeddings += self._position[: ids.shape[1]]
        embeddings += self._token_type0
        (hidden,) = self._session.run(
            ["hidden"],
            {"embeddings": embeddings, "mask": np.ascontiguousarray(mask, dtype=np.float32)},
        )
        return hidden
