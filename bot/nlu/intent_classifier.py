"""A calibrated linear intent classifier for Rasa 3.6.

It combines the dense sentence features (MiniLM embeddings) and the sparse sentence
features (word and character n-gram counts, regex matches) of a message, each block
scaled to unit length and weighted, and trains a linear model on them: a one-vs-rest
linear SVM (default; trains in seconds) or a multinomial logistic regression. Its scores
are turned into calibrated probabilities by temperature scaling: a share of the training
data is held out, the temperature that minimises the held-out negative log-likelihood of
softmax(scores / T) is found, and the final model (trained on everything) uses it. Calibrated
scores are what makes a confidence threshold ("not sure") meaningful; see docs/nlu.md.

The trained model is stored as plain arrays (``.npz``) and JSON, so loading a model
never unpickles code.
"""
from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence, Text, Tuple

import numpy as np
import scipy.sparse
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, INTENT, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.nlu.language_gate import possible_languages

logger = logging.getLogger(__name__)

ARRAYS_FILE = "classifier.npz"
META_FILE = "classifier.json"


def fit_linear(
    X: scipy.sparse.csr_matrix, y: np.ndarray, kind: str, C: float, max_iter: int, seed: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Train the linear model and return its weights (classes, features) and biases.

    Args:
        X: Features, one row per example.
        y: Class indices ``0..k-1`` (every class present).
        kind: ``"svm"`` (one-vs-rest linear SVM) or ``"logistic"`` (multinomial).
        C: Inverse regularisation strength.
        max_iter: Iteration limit of the solver.
        seed: Random seed.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if kind == "svm":
        model = LinearSVC(C=C, class_weight="balanced", max_iter=max_iter * 10, random_state=seed)
    elif kind == "logistic":
        model = LogisticRegression(
            C=C, max_iter=max_iter, class_weight="balanced", solver="lbfgs", random_state=seed
        )
    else:
        raise ValueError(f"unknown classifier kind {kind!r}: use 'svm' or 'logistic'")
    model.fit(X, y)
    weights, bias = model.coef_, np.atleast_1d(model.intercept_)
    if weights.shape[0] == 1:  # two classes: sklearn keeps one score for class 1
        weights, bias = np.vstack([-weights, weights]), np.concatenate([-bias, bias])
    return weights.astype(np.float32), bias.astype(np.float32)


#: Between an intent and the language of its examples in a class name (``track_order@de``).
LANGUAGE_SEPARATOR = "@"


def class_label(example: Message) -> str:
    """The class an example trains: its intent, or ``intent@language`` for examples whose
    intent block says ``metadata: {language: de}`` (data/nlu/de.yml, fr.yml).

    Each language gets its own weights for an intent, so German and French examples do
    not pull the English intent's weights towards another language (docs/nlu.md,
    "Languages"); at prediction the classes of one intent are summed.
    """
    intent = str(example.get(INTENT))
    metadata = example.get("metadata")
    language = None
    if isinstance(metadata, dict) and isinstance(metadata.get("intent"), dict):
        language = metadata["intent"].get("language")
    if isinstance(language, str) and language.strip() and language.strip().lower() != "en":
        return f"{intent}{LANGUAGE_SEPARATOR}{language.strip().lower()}"
    return intent


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of ``labels``.

    Args:
        logits: Held-out logits, shape (n, classes).
        labels: The true class index of each row.

    Returns:
        A temperature in [0.005, 20]; 1.0 when there is nothing to fit.
    """
    if len(labels) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        probs = _softmax(logits / np.exp(log_t))
        return float(-np.mean(np.log(probs[np.arange(len(labels)), labels] + 1e-12)))

    low, high = np.log(0.005), np.log(20.0)
    golden = (np.sqrt(5) - 1) / 2
    a, b = low, high
    c, d = b - golden * (b - a), a + golden * (b - a)
    for _ in range(60):
        if nll(c) < nll(d):
            b = d
        else:
            a = c
        c, d = b - golden * (b - a), a + golden * (b - a)
    return float(np.exp((a + b) / 2))


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=True
)
class CalibratedIntentClassifier(GraphComponent, IntentClassifier):
    """A linear model over dense + sparse features with temperature-calibrated scores."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """Defaults; every key can be set in config.yml."""
        return {
            # Weight of the dense (embedding) block and the sparse (n-gram) block.
            "dense_weight": 1.0,
            "sparse_weight": 1.0,
            # "svm" (one-vs-rest linear SVM) or "logistic" (multinomial regression).
            "model": "svm",
            # Inverse regularisation strength.
            "C": 1.0,
            "max_iter": 300,
            # Share of each intent held out to fit the temperature (0 disables calibration).
            "calibration_share": 0.2,
            "random_seed": 20261122,
            "ranking_length": 10,
            # With examples of other languages (metadata language), also a model of the
            # English examples alone for messages with no sign of another language.
            "english_model": True,
        }

    @staticmethod
    def required_packages() -> List[Text]:
        """Python packages the component needs."""
        return ["sklearn", "scipy", "numpy"]

    def __init__(
        self,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        classes: Optional[Sequence[str]] = None,
        weights: Optional[np.ndarray] = None,
        bias: Optional[np.ndarray] = None,
        temperature: float = 1.0,
        sparse_dim: int = 0,
        dense_dim: int = 0,
        english_classes: Optional[Sequence[str]] = None,
        english_temperature: float = 1.0,
    ) -> None:
        self.config = {**self.get_default_config(), **config}
        self._model_storage = model_storage
        self._resource = resource
        self.classes = list(classes or [])
        self._merge: Optional[Tuple[List[str], np.ndarray]] = None
        self.weights = weights
        self.bias = bias
        self.temperature = float(temperature)
        #: The English model's classes (its rows follow the classes' in ``weights``).
        self.english_classes = list(english_classes or [])
        self.english_temperature = float(english_temperature)
        self.sparse_dim = sparse_dim
        self.dense_dim = dense_dim
        self._cached_weights_t: Optional[np.ndarray] = None

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "CalibratedIntentClassifier":
        """A new, untrained component."""
        return cls(config, model_storage, resource)

    # ------------------------------------------------------------------ features
    def _raw_rows(
        self, messages: Sequence[Message]
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Collect the sentence features of ``messages`` without Rasa's feature combining.

        Rasa's ``Message.get_sparse_features`` deep-copies and ``hstack``s every
        featurizer's sequence *and* sentence matrices (~3 ms per message); the
        classifier reads only the sentence rows, so they are gathered here as
        flat arrays, in the same column order (the order the featurizers added
        them).

        Args:
            messages: Featurized messages.

        Returns:
            ``(rows, columns, values)`` of the sparse block (duplicates not yet
            summed) and the dense block, shape ``(len(messages), dense_dim)``.

        Raises:
            ValueError: The sparse or dense width differs from training.
        """
        rows: List[np.ndarray] = []
        cols: List[np.ndarray] = []
        vals: List[np.ndarray] = []
        dense = np.zeros((len(messages), self.dense_dim), dtype=np.float32)
        for row, message in enumerate(messages):
            offset = 0
            dense_parts = []
            for feature in message.features:
                if feature.attribute != TEXT or feature.type != FEATURE_TYPE_SENTENCE:
                    continue
                if feature.is_sparse():
                    matrix = feature.features
                    if not scipy.sparse.isspmatrix_coo(matrix):
                        matrix = matrix.tocoo()
                    cols.append(matrix.col.astype(np.int64) + offset)
                    vals.append(matrix.data.astype(np.float32, copy=False))
                    rows.append(np.full(matrix.nnz, row, dtype=np.int64))
                    offset += matrix.shape[1]
                else:
                    dense_parts.append(np.asarray(feature.features, dtype=np.float32).ravel())
            if offset and offset != self.sparse_dim:
                raise ValueError(f"sparse features have {offset} columns, expected {self.sparse_dim}")
            if dense_parts:
                vector = dense_parts[0] if len(dense_parts) == 1 else np.concatenate(dense_parts)
                if vector.shape[0] != self.dense_dim:
                    raise ValueError(
                        f"dense features have {vector.shape[0]} columns, expected {self.dense_dim}"
                    )
                dense[row] = vector
        empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0, np.float32)
        return (
            np.concatenate(rows) if rows else empty_i,
            np.concatenate(cols) if cols else empty_i,
            np.concatenate(vals) if vals else empty_f,
            dense,
        )

    def _blocks(
        self, messages: Sequence[Message]
    ) -> Tuple[scipy.sparse.csr_matrix, np.ndarray]:
        """The scaled sparse block (log1p counts, unit rows) and dense block (unit rows).

        Args:
            messages: Featurized messages.

        Returns:
            The sparse block ``(n, sparse_dim)`` (CSR) and the dense block
            ``(n, dense_dim)``, each row of each block scaled to unit length
            times the block's weight.

        Raises:
            ValueError: No features at all.
        """
        if not self.sparse_dim and not self.dense_dim:
            raise ValueError(
                "CalibratedIntentClassifier found no features: put a featurizer before it"
            )
        rows, cols, vals, dense = self._raw_rows(messages)
        sparse = scipy.sparse.csr_matrix(
            (vals, (rows, cols)), shape=(len(messages), self.sparse_dim), dtype=np.float32
        )  # sums duplicates
        sparse.data = np.log1p(sparse.data)
        norms = np.sqrt(np.asarray(sparse.multiply(sparse).sum(axis=1), dtype=np.float32)).ravel()
        norms[norms == 0] = 1.0
        scale = np.float32(self.config["sparse_weight"]) / norms
        sparse.data *= np.repeat(scale, np.diff(sparse.indptr))
        dense_norms = np.linalg.norm(dense, axis=1, keepdims=True)
        dense_norms[dense_norms == 0] = 1.0
        dense = dense / dense_norms * np.float32(self.config["dense_weight"])
        return sparse, dense.astype(np.float32, copy=False)

    def _features(self, messages: Sequence[Message]) -> scipy.sparse.csr_matrix:
        """The training matrix: the sparse and dense blocks side by side (CSR)."""
        sparse, dense = self._blocks(messages)
        blocks = []
        if self.sparse_dim:
            blocks.append(sparse)
        if self.dense_dim:
            blocks.append(scipy.sparse.csr_matrix(dense))
        return scipy.sparse.hstack(blocks, format="csr")

    def _logits(self, messages: Sequence[Message]) -> np.ndarray:
        """Uncalibrated scores, shape ``(len(messages), classes)``.

        Computes the same numbers as ``_features(messages) @ weights.T + bias``
        with plain NumPy per message (no SciPy matrices: their construction
        costs more than the arithmetic for one message).
        """
        rows, cols, vals, dense = self._raw_rows(messages)
        weights_t = self._weights_t()
        sparse_w = weights_t[: self.sparse_dim]
        dense_w = weights_t[self.sparse_dim :]
        logits = np.tile(self.bias.astype(np.float32), (len(messages), 1))
        sparse_weight = np.float32(self.config["sparse_weight"])
        dense_weight = np.float32(self.config["dense_weight"])
        bounds = np.searchsorted(rows, np.arange(len(messages) + 1))  # rows are sorted
        for i in range(len(messages)):
            if self.sparse_dim and bounds[i + 1] > bounds[i]:
                columns, inverse = np.unique(
                    cols[bounds[i] : bounds[i + 1]], return_inverse=True
                )
                values = np.log1p(
                    np.bincount(inverse, weights=vals[bounds[i] : bounds[i + 1]])
                ).astype(np.float32)
                norm = np.sqrt(np.dot(values, values))
                if norm > 0:
                    logits[i] += (values * (sparse_weight / norm)) @ sparse_w[columns]
            if self.dense_dim:
                norm = np.linalg.norm(dense[i])
                if norm > 0:
                    logits[i] += (dense[i] * (dense_weight / norm)) @ dense_w
        return logits

    def _weights_t(self) -> np.ndarray:
        """The weights as a C-contiguous (features, classes) array, made once."""
        if self._cached_weights_t is None:
            self._cached_weights_t = np.ascontiguousarray(self.weights.T, dtype=np.float32)
        return self._cached_weights_t

    def _fit(self, X: scipy.sparse.csr_matrix, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return fit_linear(
            X, y, str(self.config["model"]), float(self.config["C"]),
            int(self.config["max_iter"]), int(self.config["random_seed"]),
        )

    def _fit_calibrated(
        self, X: scipy.sparse.csr_matrix, y: np.ndarray, n_classes: int
    ) -> Tuple[np.ndarray, np.ndarray, float]:
        """Weights, biases and the temperature fitted on a held-out share of ``y``."""
        calibration: Optional[Tuple[np.ndarray, np.ndarray]] = None
        if float(self.config["calibration_share"]) > 0 and n_classes > 1:
            fit_rows, held_rows = self._calibration_split(y)
            if len(held_rows) and len(np.unique(y[fit_rows])) == n_classes:
                calibration = fit_rows, held_rows
        if calibration is None:
            weights, bias = self._fit(X, y)
            return weights, bias, 1.0
        # The calibration model and the final model are independent fits: run them
        # side by side (liblinear releases the GIL, so this uses both cores).
        fit_rows, held_rows = calibration
        with ThreadPoolExecutor(max_workers=2) as pool:
            held_fit = pool.submit(self._fit, X[fit_rows], y[fit_rows])
            final_fit = pool.submit(self._fit, X, y)
            held_weights, held_bias = held_fit.result()
            weights, bias = final_fit.result()
        logits = np.asarray(X[held_rows] @ held_weights.T) + held_bias
        return weights, bias, fit_temperature(logits, y[held_rows])

    def _calibration_split(self, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(int(self.config["random_seed"]))
        share = float(self.config["calibration_share"])
        held = []
        for label in np.unique(y):
            rows = np.flatnonzero(y == label)
            rng.shuffle(rows)
            take = int(round(len(rows) * share)) if len(rows) >= 5 else 0
            held.extend(rows[:take])
        held_mask = np.zeros(len(y), dtype=bool)
        held_mask[held] = True
        return np.flatnonzero(~held_mask), np.flatnonzero(held_mask)

    # ------------------------------------------------------------------ training
    def train(self, training_data: TrainingData) -> Resource:
        """Fit the classifier and its temperature, then persist them."""
        examples = [e for e in training_data.intent_examples if e.get(INTENT) and e.get(TEXT)]
        if not examples:
            logger.debug("CalibratedIntentClassifier: no intent examples, nothing to train")
            return self._resource
        first_sparse = examples[0].get_sparse_features(TEXT)[1]
        first_dense = examples[0].get_dense_features(TEXT)[1]
        self.sparse_dim = first_sparse.features.shape[-1] if first_sparse is not None else 0
        self.dense_dim = first_dense.features.shape[-1] if first_dense is not None else 0
        X = self._features(examples)
        labels = [class_label(e) for e in examples]
        self.classes = sorted(set(labels))
        self._merge = None
        index = {name: i for i, name in enumerate(self.classes)}
        y = np.array([index[label] for label in labels])
        self.weights, self.bias, self.temperature = self._fit_calibrated(X, y, len(self.classes))
        # With other languages, a second model of the English examples alone scores the
        # messages without a sign of another language (bot/nlu/language_gate.py): English
        # is understood exactly as without the languages (docs/nlu.md, "Languages").
        english_rows = np.array([LANGUAGE_SEPARATOR not in label for label in labels])
        self.english_classes = []
        self.english_temperature = 1.0
        if self.config["english_model"] and not english_rows.all() and english_rows.any():
            english_labels = [label for label, keep in zip(labels, english_rows) if keep]
            self.english_classes = sorted(set(english_labels))
            english_index = {name: i for i, name in enumerate(self.english_classes)}
            y_en = np.array([english_index[label] for label in english_labels])
            weights, bias, self.english_temperature = self._fit_calibrated(
                X[np.flatnonzero(english_rows)], y_en, len(self.english_classes))
            self.weights = np.vstack([self.weights, weights])
            self.bias = np.concatenate([self.bias, bias])
        self._cached_weights_t = None
        logger.debug(f"CalibratedIntentClassifier: temperature {self.temperature:.3f}")
        self.persist()
        return self._resource

    # ------------------------------------------------------------------ inference
    @property
    def intents(self) -> List[str]:
        """The intents the classifier predicts (its classes without their languages)."""
        return self._merged()[0]

    def _merged(self) -> Tuple[List[str], np.ndarray]:
        """The intents and the (classes, intents) 0/1 matrix that sums a class's languages."""
        if self._merge is None:
            intents = sorted({name.split(LANGUAGE_SEPARATOR, 1)[0] for name in self.classes})
            column = {name: i for i, name in enumerate(intents)}
            matrix = np.zeros((len(self.classes), len(intents)), dtype=np.float64)
            for row, name in enumerate(self.classes):
                matrix[row, column[name.split(LANGUAGE_SEPARATOR, 1)[0]]] = 1.0
            self._merge = intents, matrix
        return self._merge

    def predict_proba(self, messages: Sequence[Message]) -> np.ndarray:
        """Calibrated probabilities of the intents, shape (len(messages), len(intents)).

        A class per language (``track_order@de``) adds its probability to its intent's.
        A message without a sign of another language is scored by the English model; one
        with a sign by the model of all languages, without the classes of the languages
        it shows no sign of.
        """
        logits = self._logits(messages)
        n = len(self.classes)
        multilingual = logits[:, :n] / self.temperature
        intents, matrix = self._merged()
        if len(intents) == n:
            return _softmax(multilingual)
        languages = [name.partition(LANGUAGE_SEPARATOR)[2] for name in self.classes]
        column = {name: i for i, name in enumerate(intents)}
        english_columns = [column[name] for name in self.english_classes]
        out = np.zeros((len(messages), len(intents)), dtype=np.float64)
        for row, message in enumerate(messages):
            possible = possible_languages(str(message.get(TEXT) or ""))
            if not possible and english_columns:
                out[row, english_columns] = _softmax(
                    logits[row : row + 1, n:] / self.english_temperature)[0]
                continue
            scores = multilingual[row].copy()
            closed = [i for i, lang in enumerate(languages) if lang and lang not in possible]
            scores[closed] = -np.inf
            out[row] = _softmax(scores[None, :])[0] @ matrix
        return out

    def process(self, messages: List[Message]) -> List[Message]:
        """Set ``intent`` and ``intent_ranking`` on each message."""
        if self.weights is None or not messages:
            return messages
        probabilities = self.predict_proba(messages)
        intents = self.intents
        limit = int(self.config["ranking_length"])
        for message, probs in zip(messages, probabilities):
            order = np.argsort(-probs)
            ranking = [
                {"name": intents[i], "confidence": float(probs[i])} for i in order
            ]
            message.set(INTENT, ranking[0], add_to_output=True)
            message.set("intent_ranking", ranking[:limit] if limit > 0 else ranking,
                        add_to_output=True)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Classify the training examples too (as Rasa's classifiers do)."""
        self.process(training_data.training_examples)
        return training_data

    # ------------------------------------------------------------------ storage
    def persist(self) -> None:
        """Store the arrays and metadata in the model storage."""
        with self._model_storage.write_to(self._resource) as directory:
            np.savez(directory / ARRAYS_FILE, weights=self.weights, bias=self.bias)
            (directory / META_FILE).write_text(json.dumps({
                "classes": self.classes,
                "temperature": self.temperature,
                "english_classes": self.english_classes,
                "english_temperature": self.english_temperature,
                "sparse_dim": self.sparse_dim,
                "dense_dim": self.dense_dim,
            }))

    @classmethod
    def load(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> "CalibratedIntentClassifier":
        """Load a trained classifier (an untrained one when nothing was stored)."""
        try:
            with model_storage.read_from(resource) as directory:
                meta = json.loads((directory / META_FILE).read_text())
                with np.load(directory / ARRAYS_FILE, allow_pickle=False) as arrays:
                    weights, bias = arrays["weights"], arrays["bias"]
        except (ValueError, FileNotFoundError):
            logger.debug("CalibratedIntentClassifier: no trained model stored, starting empty")
            return cls.create(config, model_storage, resource, execution_context)
        return cls(
            config, model_storage, resource, classes=meta["classes"], weights=weights,
            bias=bias, temperature=meta["temperature"], sparse_dim=meta["sparse_dim"],
            dense_dim=meta["dense_dim"], english_classes=meta.get("english_classes"),
            english_temperature=meta.get("english_temperature", 1.0),
        )
