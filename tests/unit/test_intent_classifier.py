"""The calibrated intent classifier component (bot/nlu/intent_classifier.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.features import Features
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.nlu.intent_classifier import CalibratedIntentClassifier, _softmax, fit_temperature


def test_fit_temperature_recovers_the_temperature_that_generated_the_labels() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 5)) * 3
    true_t = 2.5
    probs = _softmax(logits / true_t)
    labels = np.array([rng.choice(5, p=p) for p in probs])
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.1)
    assert fit_temperature(logits[:0], labels[:0]) == 1.0


def message(text: str, intent: str | None, dense: np.ndarray, sparse: np.ndarray) -> Message:
    m = Message(data={TEXT: text, **({"intent": intent} if intent else {})})
    m.add_features(Features(dense.reshape(1, -1).astype(np.float32), "sentence", TEXT, "dense"))
    m.add_features(Features(scipy.sparse.coo_matrix(sparse.reshape(1, -1)), "sentence", TEXT, "sparse"))
    return m


def make_data(rng: np.random.Generator, n: int = 40) -> list:
    centres = {"track_order": np.eye(8)[0], "get_refund": np.eye(8)[1], "greet": np.eye(8)[2]}
    out = []
    for intent, centre in centres.items():
        for i in range(n):
            dense = centre + rng.normal(scale=0.3, size=8)
            sparse = np.zeros(6)
            sparse[list(centres).index(intent)] = rng.integers(1, 3)
            out.append(message(f"{intent} {i}", intent, dense, sparse))
    return out


@pytest.fixture
def storage(tmp_path: Path) -> LocalModelStorage:
    (tmp_path / "storage").mkdir()
    return LocalModelStorage(tmp_path / "storage")


def test_train_persist_load_and_classify(storage: LocalModelStorage) -> None:
    rng = np.random.default_rng(1)
    context = ExecutionContext(GraphSchema({}), "test")
    resource = Resource("intent_classifier")
    component = CalibratedIntentClassifier.create({"C": 1.0}, storage, resource, context)
    component.train(TrainingData(make_data(rng)))
    assert component.classes == ["get_refund", "greet", "track_order"]
    assert 0.05 <= component.temperature <= 20

    loaded = CalibratedIntentClassifier.load({"ranking_length": 2}, storage, resource, context)
    probe = message("probe", None, np.eye(8)[1], np.array([0, 2, 0, 0, 0, 0.0]))
    loaded.process([probe])
    assert probe.get("intent")["name"] == "get_refund"
    ranking = probe.get("intent_ranking")
    assert [r["name"] for r in ranking][0] == "get_refund" and len(ranking) == 2
    total = sum(r["confidence"] for r in ranking)
    assert 0.9 < total <= 1.0 + 1e-6
    np.testing.assert_allclose(loaded.predict_proba([probe]), component.predict_proba([probe]))


def test_load_without_a_trained_model_gives_an_empty_classifier(storage: LocalModelStorage) -> None:
    context = ExecutionContext(GraphSchema({}), "test")
    component = CalibratedIntentClassifier.load({}, storage, Resource("missing"), context)
    probe = message("x", None, np.ones(8), np.ones(6))
    assert component.process([probe]) == [probe]
    assert probe.get("intent") is None


def test_messages_without_features_are_a_clear_error(storage: LocalModelStorage) -> None:
    context = ExecutionContext(GraphSchema({}), "test")
    component = CalibratedIntentClassifier.create({}, storage, Resource("r"), context)
    with pytest.raises(ValueError, match="found no features"):
        component.train(TrainingData([Message(data={TEXT: "hi", "intent": "greet"})]))


@pytest.mark.parametrize("kind", ["svm", "logistic"])
def test_both_linear_models_and_two_classes(kind: str) -> None:
    from bot.nlu.intent_classifier import fit_linear

    rng = np.random.default_rng(2)
    X = scipy.sparse.csr_matrix(np.vstack([rng.normal(0, 1, (30, 4)) + 3, rng.normal(0, 1, (30, 4)) - 3]))
    y = np.array([0] * 30 + [1] * 30)
    weights, bias = fit_linear(X, y, kind, 1.0, 200, 0)
    assert weights.shape == (2, 4) and bias.shape == (2,)
    scores = np.asarray(X @ weights.T) + bias
    assert np.mean(scores.argmax(axis=1) == y) == 1.0


def test_unknown_model_kind_is_a_clear_error() -> None:
    from bot.nlu.intent_classifier import fit_linear

    with pytest.raises(ValueError, match="unknown classifier kind 'tree'"):
        fit_linear(scipy.sparse.csr_matrix(np.eye(2)), np.array([0, 1]), "tree", 1.0, 10, 0)


def test_inference_features_equal_rasas_combined_features(storage: LocalModelStorage) -> None:
    """The classifier reads sentence features itself; they must equal Rasa's combination.

    Several sparse featurizers (sequence + sentence features each), a duplicate column in
    one COO matrix, and the dense block: the logits computed from the classifier's own
    feature assembly equal those from ``Message.get_sparse_features`` /
    ``get_dense_features`` (what the first version of the component used).
    """
    rng = np.random.default_rng(3)
    widths = (5, 7, 3)

    def featurized(text: str, intent: str | None) -> Message:
        m = Message(data={TEXT: text, **({"intent": intent} if intent else {})})
        for origin, width in zip(("regex", "word", "char"), widths):
            seq = scipy.sparse.coo_matrix(rng.integers(0, 2, size=(3, width)).astype(float))
            m.add_features(Features(seq, "sequence", TEXT, origin))
            cols = rng.choice(width, size=3)  # may repeat: duplicates are summed
            sent = scipy.sparse.coo_matrix(
                (rng.integers(1, 4, size=3).astype(float), (np.zeros(3, int), cols)),
                shape=(1, width),
            )
            m.add_features(Features(sent, "sentence", TEXT, origin))
        m.add_features(Features(rng.normal(size=(3, 4)).astype(np.float32), "sequence", TEXT, "d"))
        m.add_features(Features(rng.normal(size=(1, 4)).astype(np.float32), "sentence", TEXT, "d"))
        return m

    train = [featurized(f"t{i}", ("a", "b", "c")[i % 3]) for i in range(60)]
    context = ExecutionContext(GraphSchema({}), "test")
    component = CalibratedIntentClassifier.create(
        {"sparse_weight": 0.7, "dense_weight": 1.3}, storage, Resource("c"), context
    )
    component.train(TrainingData(train))
    assert component.sparse_dim == sum(widths) and component.dense_dim == 4

    probes = [featurized(f"p{i}", None) for i in range(5)]
    rows = []
    for m in probes:
        sparse = scipy.sparse.csr_matrix(m.get_sparse_features(TEXT)[1].features).astype(np.float64)
        sparse.data = np.log1p(sparse.data)
        sparse = sparse / max(np.sqrt(sparse.multiply(sparse).sum()), 1e-12) * 0.7
        dense = m.get_dense_features(TEXT)[1].features.astype(np.float64)
        dense = dense / np.linalg.norm(dense) * 1.3
        rows.append(np.hstack([sparse.toarray(), dense]))
    X = np.vstack(rows)
    expected = X @ component.weights.T.astype(np.float64) + component.bias
    np.testing.assert_allclose(component._logits(probes), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(component._features(probes).toarray(), X, atol=1e-5)
