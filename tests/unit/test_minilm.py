"""Tests for the NumPy all-MiniLM-L6-v2 encoder and its Rasa featurizer.

* :class:`bot.nlu.minilm.MiniLMEncoder` matches reference embeddings computed
  with PyTorch + transformers (``tests/fixtures/minilm_reference.json``, see
  ``scripts/make_minilm_reference.py``); batching, order, truncation, empty
  input, spans and threads;
* :class:`bot.nlu.embedding_featurizer.MiniLMFeaturizer` adds (1, 384) sentence
  and (tokens, 384) sequence features, and a tiny pipeline with
  ``LogisticRegressionClassifier`` (and one with ``DIETClassifier``) trains and
  predicts the right intent.

The model files must be in the ``EMBEDDING_MODEL_DIR`` setting's directory
(``make setup`` fetches them); without them these tests fail, not skip.
"""
from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from bot.nlu.minilm import MiniLMEncoder, ModelFilesMissingError
from tests.unit.nlu_helpers import make_featurizer, tokenized

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "minilm_reference.json"
DIM = 384


@pytest.fixture(scope="module")
def encoder(model_dir: Path) -> MiniLMEncoder:
    return MiniLMEncoder.load(model_dir)


@pytest.fixture(scope="module")
def reference() -> Dict[str, Any]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


# -- encoder ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def numpy_encoder(model_dir: Path) -> MiniLMEncoder:
    return MiniLMEncoder.load(model_dir, backend="numpy")


@pytest.fixture(scope="module")
def tensorflow_encoder(model_dir: Path) -> MiniLMEncoder:
    return MiniLMEncoder.load(model_dir, backend="tensorflow")


def test_default_backend_is_onnxruntime(
    encoder: MiniLMEncoder, tensorflow_encoder: MiniLMEncoder, numpy_encoder: MiniLMEncoder
) -> None:
    # ONNX Runtime is pinned in requirements.lock; TensorFlow (with Rasa) and NumPy (the
    # reference) stay as fallbacks.
    assert encoder.backend == "onnxruntime"
    assert tensorflow_encoder.backend == "tensorflow" and numpy_encoder.backend == "numpy"
    assert encoder.num_layers == tensorflow_encoder.num_layers == numpy_encoder.num_layers == 6


def test_auto_falls_back_without_onnxruntime(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.nlu import minilm_onnx

    monkeypatch.setattr(minilm_onnx, "onnxruntime_available", lambda: False)
    assert MiniLMEncoder.load(model_dir, num_layers=1).backend == "tensorflow"


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorflow", "numpy"])
def test_matches_reference_embeddings(
    encoder: MiniLMEncoder,
    tensorflow_encoder: MiniLMEncoder,
    numpy_encoder: MiniLMEncoder,
    reference: Dict[str, Any],
    backend: str,
) -> None:
    encoder = {"onnxruntime": encoder, "tensorflow": tensorflow_encoder,
               "numpy": numpy_encoder}[backend]
    assert encoder.backend == backend
    sentences: List[str] = reference["sentences"]
    expected = np.asarray(reference["vectors"], dtype=np.float64)
    assert reference["max_length"] == encoder.max_length
    got = encoder.encode(sentences)
    assert got.shape == (len(sentences), DIM)
    assert got.dtype == np.float32
    for text, row, ref in zip(sentences, got.astype(np.float64), expected):
        max_diff = float(np.abs(row - ref).max())
        cosine = float(row @ ref / (np.linalg.norm(row) * np.linalg.norm(ref)))
        assert max_diff < 1e-4, f"{text[:40]!r}: max abs diff {max_diff:.2e}"
        assert cosine > 0.9999, f"{text[:40]!r}: cosine {cosine:.6f}"


def test_reference_covers_the_edge_cases(reference: Dict[str, Any]) -> None:
    sentences = reference["sentences"]
    assert any(not s.isascii() for s in sentences)
    assert "?" in sentences
    assert max(reference["untruncated_token_counts"]) > reference["max_length"]


def test_rows_are_unit_vectors(encoder: MiniLMEncoder, reference: Dict[str, Any]) -> None:
    norms = np.linalg.norm(encoder.encode(reference["sentences"]), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_batching_and_order_do_not_change_results(
    encoder: MiniLMEncoder, reference: Dict[str, Any]
) -> None:
    texts = reference["sentences"] + ["track my parcel", "hi", "where's the refund for #123"]
    baseline = encoder.encode(texts, batch_size=64)
    for batch_size in (1, 3):
        batched = encoder.encode(texts, batch_size=batch_size)
        np.testing.assert_allclose(batched, baseline, atol=1e-5)
    order = list(range(len(texts)))
    random.Random(7).shuffle(order)
    shuffled = encoder.encode([texts[i] for i in order], batch_size=4)
    np.testing.assert_allclose(shuffled, baseline[order], atol=1e-5)
    np.testing.assert_allclose(encoder.encode_one(texts[1]), baseline[1], atol=1e-5)


def test_duplicates_get_identical_vectors(encoder: MiniLMEncoder) -> None:
    texts = ["cancel my order", "a much longer sentence to pad", "cancel my order"]
    vectors = encoder.encode(texts)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)


def test_empty_input_list(encoder: MiniLMEncoder) -> None:
    out = encoder.encode([])
    assert out.shape == (0, DIM)
    assert out.dtype == np.float32
    sentences, tokens = encoder.encode_with_spans([], [])
    assert sentences.shape == (0, DIM) and tokens == []


def test_long_text_is_truncated(encoder: MiniLMEncoder, reference: Dict[str, Any]) -> None:
    long_text = max(reference["sentences"], key=len)
    assert encoder.count_tokens(long_text) == encoder.max_length == 128
    longer = long_text + " and many more words that fall past the limit" * 20
    np.testing.assert_allclose(encoder.encode_one(longer), encoder.encode_one(long_text), atol=1e-6)
    shorter = encoder.encode_one(long_text[:200])
    assert not np.allclose(shorter, encoder.encode_one(long_text), atol=1e-3)


@pytest.mark.parametrize("other", ["tensorflow", "numpy"])
def test_backends_agree_on_batches_and_spans(
    encoder: MiniLMEncoder,
    tensorflow_encoder: MiniLMEncoder,
    numpy_encoder: MiniLMEncoder,
    reference: Dict[str, Any],
    other: str,
) -> None:
    other_encoder = tensorflow_encoder if other == "tensorflow" else numpy_encoder
    texts = reference["sentences"] + ["track my parcel", "hi"]
    np.testing.assert_allclose(
        encoder.encode(texts, batch_size=5), other_encoder.encode(texts, batch_size=5), atol=1e-5
    )
    spans = [[(0, 5), (6, 8)]]
    _, (ort_tokens,) = encoder.encode_with_spans(["Where is my order?"], spans)
    _, (other_tokens,) = other_encoder.encode_with_spans(["Where is my order?"], spans)
    np.testing.assert_allclose(ort_tokens, other_tokens, atol=1e-4)


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorflow", "numpy"])
def test_fewer_layers(model_dir: Path, encoder: MiniLMEncoder, backend: str) -> None:
    texts = ["where is my order?", "where's my parcel", "what's the weather like"]
    short = MiniLMEncoder.load(model_dir, backend=backend, num_layers=3)
    assert short.num_layers == 3
    vectors = short.encode(texts)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # a different (shallower) embedding than the full model's ...
    assert np.abs(vectors - encoder.encode(texts)).max() > 1e-2
    # ... that still puts paraphrases closer than unrelated messages
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_fewer_layers_backends_agree(model_dir: Path) -> None:
    texts = ["where is my order?", "cancel it", "Café?"]
    a = MiniLMEncoder.load(model_dir, backend="onnxruntime", num_layers=4).encode(texts)
    b = MiniLMEncoder.load(model_dir, backend="tensorflow", num_layers=4).encode(texts)
    c = MiniLMEncoder.load(model_dir, backend="numpy", num_layers=4).encode(texts)
    np.testing.assert_allclose(a, c, atol=1e-5)
    np.testing.assert_allclose(b, c, atol=1e-5)


def test_invalid_layers_and_backend(model_dir: Path) -> None:
    for layers in (0, 7):
        with pytest.raises(ValueError, match="num_layers"):
            MiniLMEncoder.load(model_dir, num_layers=layers)
    with pytest.raises(ValueError, match="backend"):
        MiniLMEncoder.load(model_dir, backend="torch")


def test_invalid_batch_size(encoder: MiniLMEncoder) -> None:
    with pytest.raises(ValueError):
        encoder.encode(["hi"], batch_size=0)


def test_missing_model_dir_has_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesMissingError, match="make setup"):
        MiniLMEncoder.load(tmp_path)


def test_span_vectors(encoder: MiniLMEncoder) -> None:
    text = "Where is my order?"
    spans = [(0, 5), (6, 8), (9, 11), (12, 17), (17, 17)]
    sentences, tokens = encoder.encode_with_spans([text, "hi"], [spans, []])
    np.testing.assert_allclose(sentences, encoder.encode([text, "hi"]), atol=1e-6)
    assert tokens[0].shape == (5, DIM) and tokens[1].shape == (0, DIM)
    assert np.abs(tokens[0][:4]).sum(axis=1).min() > 0
    assert not tokens[0][4].any()  # an empty span covers no word piece

    long_text = "word " * 300
    _, (long_tokens,) = encoder.encode_with_spans([long_text], [[(0, 4), (1490, 1494)]])
    assert long_tokens[0].any() and not long_tokens[1].any()  # past the truncation limit


def test_concurrent_encode_is_consistent(encoder: MiniLMEncoder) -> None:
    texts = ["where is my order?", "refund please 😡", "Café?", "cancel it", "hi", "?"]
    expected = encoder.encode(texts)
    jobs = [texts[i:] + texts[:i] for i in range(len(texts))]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda batch: encoder.encode(batch, batch_size=2), jobs))
    for shift, result in enumerate(results):
        np.testing.assert_allclose(result, np.roll(expected, -shift, axis=0), atol=1e-5)


# -- Rasa featurizer ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["tokens", "sentence", "zeros"])
def test_featurizer_adds_sentence_and_sequence_features(
    model_dir: Path, encoder: MiniLMEncoder, mode: str
) -> None:
    from rasa.nlu.constants import TOKENS_NAMES
    from rasa.shared.nlu.constants import TEXT

    featurizer = make_featurizer(model_dir, sequence_features=mode)
    text = "Where is my order #A-1043?"
    message = tokenized(text)
    n_tokens = len(message.get(TOKENS_NAMES[TEXT]))
    featurizer.process([message])

    sequence, sentence = message.get_dense_features(TEXT)
    assert sentence is not None and sequence is not None
    assert sentence.features.shape == (1, DIM)
    assert sequence.features.shape == (n_tokens, DIM)
    assert {(f.type, f.origin) for f in message.features} == {
        ("sentence", "minilm_featurizer"),
        ("sequence", "minilm_featurizer"),
    }
    np.testing.assert_allclose(sentence.features[0], encoder.encode_one(text), atol=1e-5)
    if mode == "zeros":
        assert not sequence.features.any()
    elif mode == "sentence":
        np.testing.assert_allclose(sequence.features, np.repeat(sentence.features, n_tokens, 0))
    else:
        assert np.abs(sequence.features).sum(axis=1).min() > 0


def test_featurizer_skips_empty_text(model_dir: Path) -> None:
    from rasa.shared.nlu.constants import TEXT
    from rasa.shared.nlu.training_data.message import Message

    message = Message(data={TEXT: ""})
    make_featurizer(model_dir).process([message])
    assert message.get_dense_features(TEXT) == (None, None)


def test_featurizer_rejects_bad_config(model_dir: Path) -> None:
    from rasa.shared.exceptions import InvalidConfigException

    with pytest.raises(InvalidConfigException):
        make_featurizer(model_dir, sequence_features="cls")
    with pytest.raises(InvalidConfigException):
        make_featurizer(model_dir, batch_size=0)
    with pytest.raises(InvalidConfigException):
        make_featurizer(model_dir, num_layers=0)
    with pytest.raises(InvalidConfigException):
        make_featurizer(model_dir, num_layers=9)
    with pytest.raises(InvalidConfigException):
        make_featurizer(model_dir, backend="torch")


def test_featurizer_num_layers_option(model_dir: Path) -> None:
    from rasa.shared.nlu.constants import TEXT

    text = "Where is my order?"
    featurizer = make_featurizer(model_dir, num_layers=4, sequence_features="zeros")
    message = tokenized(text)
    featurizer.process([message])
    expected = MiniLMEncoder.load(model_dir, num_layers=4).encode_one(text)
    np.testing.assert_allclose(message.get_dense_features(TEXT)[1].features[0], expected, atol=1e-5)


NLU_DATA = """\
version: "3.1"
nlu:
- intent: track_order
  examples: |
    - where is my order
    - track my package
    - when will my parcel arrive
    - has my order shipped yet
    - what is the delivery status of my purchase
- intent: get_refund
  examples: |
    - I want my money back
    - how do I get a refund
    - please reimburse me for the broken item
    - can I return this and get refunded
    - refund my payment please
- intent: greet
  examples: |
    - hello
    - hi there
    - good morning
    - hey
    - good evening, nice to meet you
"""


def _train_and_load(tmp_path: Path, classifier: str) -> Any:
    from rasa.model_training import train_nlu

    from bot.nlu_runtime import load_interpreter

    config = tmp_path / "config.yml"
    config.write_text(
        "recipe: default.v1\n"
        "language: en\n"
        "assistant_id: minilm-test\n"
        "pipeline:\n"
        "  - name: WhitespaceTokenizer\n"
        "  - name: bot.nlu.embedding_featurizer.MiniLMFeaturizer\n"
        f"{classifier}"
        "policies: []\n",
        encoding="utf-8",
    )
    data = tmp_path / "nlu.yml"
    data.write_text(NLU_DATA, encoding="utf-8")
    model = train_nlu(str(config), str(data), str(tmp_path / "models"), fixed_model_name="nlu")
    assert model and Path(model).is_file()
    return load_interpreter(model)


@pytest.mark.parametrize("with_count_vectors", [False, True], ids=["minilm", "minilm+cvf"])
def test_pipeline_with_logistic_regression(
    tmp_path: Path, model_dir: Path, with_count_vectors: bool
) -> None:
    extra = "  - name: CountVectorsFeaturizer\n" if with_count_vectors else ""
    parse = _train_and_load(tmp_path, extra + "  - name: LogisticRegressionClassifier\n")
    assert parse("where's my parcel? it hasn't arrived")["intent"]["name"] == "track_order"
    assert parse("I'd like a refund for my purchase")["intent"]["name"] == "get_refund"
    assert parse("hello!")["intent"]["name"] == "greet"


def test_pipeline_with_diet(tmp_path: Path, model_dir: Path) -> None:
    # A small DIET (one transformer layer) keeps the test short; it still reads
    # both the sequence and the sentence features of the featurizer.
    parse = _train_and_load(
        tmp_path,
        "  - name: DIETClassifier\n"
        "    epochs: 20\n"
        "    number_of_transformer_layers: 1\n"
        "    transformer_size: 64\n"
        "    random_seed: 1\n"
        "    entity_recognition: false\n",
    )
    result = parse("where's my parcel? it hasn't arrived")
    assert result["intent"]["name"] == "track_order"
