"""Rasa dense featurizer with all-MiniLM-L6-v2 sentence embeddings (no PyTorch).

Add it to ``config.yml`` after a Rasa tokenizer::

    pipeline:
      - name: WhitespaceTokenizer
      - name: bot.nlu.embedding_featurizer.MiniLMFeaturizer
        # optional:
        model_dir: null          # null -> EMBEDDING_MODEL_DIR setting
        batch_size: 64
        max_length: 128          # word pieces per text, [CLS]/[SEP] included
        num_layers: null         # run the first N of the 6 transformer layers (null: all)
        backend: auto            # auto | onnxruntime | tensorflow | numpy (same embeddings)
        training_cache: true     # reuse the last training run's vectors (EMBEDDING_CACHE_DIR)
        sequence_features: tokens  # tokens | sentence | zeros
        alias: null
      - name: LogisticRegressionClassifier   # or DIETClassifier, ...

For each text (and, in training data, response and action text) it adds:

* a sentence feature of shape ``(1, 384)``: the normalised sentence embedding
  (what ``LogisticRegressionClassifier`` and the sentence side of
  ``DIETClassifier`` read);
* a sequence feature of shape ``(number of Rasa tokens, 384)``, one row per
  token of the pipeline's tokenizer. With ``tokens`` (default) a row is the
  mean of the contextual MiniLM states of the word pieces inside that token
  (zeros for tokens past the truncation limit); ``sentence`` repeats the
  sentence embedding; ``zeros`` adds zero rows (sentence features only, in
  effect).

The model files come from ``make setup`` (``scripts/fetch_embedding_model.py``).
The encoder is loaded when the component is created or loaded, and shared by
all instances of the process that use the same directory and length.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Text, Tuple, Type

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import DENSE_FEATURIZABLE_ATTRIBUTES, TOKENS_NAMES
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.nlu.tokenizers.tokenizer import Tokenizer
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import ACTION_TEXT, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.nlu.embedding_cache import EmbeddingCache, encoder_key
from bot.nlu.minilm import BACKENDS, DEFAULT_MAX_LENGTH, MiniLMEncoder
from bot.settings import get_settings

logger = logging.getLogger(__name__)

SEQUENCE_MODES = ("tokens", "sentence", "zeros")

# Attributes featurized at inference time (the others are labels, featurized in training).
_PROCESS_ATTRIBUTES = (TEXT, ACTION_TEXT)


@functools.lru_cache(maxsize=4)
def _shared_encoder(
    model_dir: str, max_length: int, num_layers: Optional[int] = None, backend: str = "auto"
) -> MiniLMEncoder:
    """Load an encoder once per process (encoders are immutable and thread-safe)."""
    return MiniLMEncoder.load(
        Path(model_dir), max_length=max_length, backend=backend, num_layers=num_layers
    )


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=False
)
class MiniLMFeaturizer(DenseFeaturizer, GraphComponent):
    """Adds all-MiniLM-L6-v2 sentence (and token) embeddings as dense features."""

    @classmethod
    def required_components(cls) -> List[Type]:
        """Components that must come earlier in the pipeline: a Rasa tokenizer."""
        return [Tokenizer]

    @staticmethod
    def required_packages() -> List[Text]:
        """Python packages the component imports."""
        return ["safetensors", "tokenizers", "scipy"]

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """The component's default config (see parent class for full docstring)."""
        return {
            **DenseFeaturizer.get_default_config(),  # alias
            # None -> the EMBEDDING_MODEL_DIR setting
            "model_dir": None,
            # texts per forward pass
            "batch_size": 64,
            # word pieces per text, [CLS] and [SEP] included
            "max_length": DEFAULT_MAX_LENGTH,
            # rows of the sequence features: "tokens", "sentence" or "zeros"
            "sequence_features": "tokens",
            # run only the first N transformer layers (None: all six)
            "num_layers": None,
            # forward pass: "auto" (ONNX Runtime, else TensorFlow, else NumPy), "onnxruntime",
            # "tensorflow" or "numpy"
            "backend": "auto",
            # in training, reuse the sentence vectors of the last run for unchanged texts
            # (bot/nlu/embedding_cache.py; EMBEDDING_CACHE_DIR=off disables it everywhere).
            # Used with sequence_features "zeros" or "sentence" only.
            "training_cache": True,
        }

    @classmethod
    def validate_config(cls, config: Dict[Text, Any]) -> None:
        """Checks the config values.

        Raises:
            InvalidConfigException: A value is out of range or of the wrong type.
        """
        batch_size = config.get("batch_size")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InvalidConfigException(
                f"MiniLMFeaturizer: batch_size must be a positive integer, got {batch_size!r}"
            )
        max_length = config.get("max_length")
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
            raise InvalidConfigException(
                f"MiniLMFeaturizer: max_length must be an integer >= 2, got {max_length!r}"
            )
        if config.get("sequence_features") not in SEQUENCE_MODES:
            raise InvalidConfigException(
                f"MiniLMFeaturizer: sequence_features must be one of {SEQUENCE_MODES}, "
                f"got {config.get('sequence_features')!r}"
            )
        num_layers = config.get("num_layers")
        if num_layers is not None and (
            not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1
        ):
            raise InvalidConfigException(
                f"MiniLMFeaturizer: num_layers must be a positive integer or null, "
                f"got {num_layers!r}"
            )
        if config.get("backend") not in BACKENDS:
            raise InvalidConfigException(
                f"MiniLMFeaturizer: backend must be one of {BACKENDS}, got {config.get('backend')!r}"
            )
        if not isinstance(config.get("training_cache", True), bool):
            raise InvalidConfigException(
                f"MiniLMFeaturizer: training_cache must be true or false, "
                f"got {config.get('training_cache')!r}"
            )
        model_dir = config.get("model_dir")
        if model_dir is not None and not isinstance(model_dir, (str, Path)):
            raise InvalidConfigException(
                f"MiniLMFeaturizer: model_dir must be a path or null, got {model_dir!r}"
            )

    def __init__(
        self,
        config: Dict[Text, Any],
        name: Text,
        encoder: MiniLMEncoder,
        model_dir: Optional[Path] = None,
    ) -> None:
        """Creates the featurizer around a loaded encoder.

        Args:
            config: The merged component config.
            name: The graph node name (used as feature origin without an alias).
            encoder: The loaded encoder.
            model_dir: The encoder's model directory (identifies the training cache;
                ``None``: no cache).
        """
        super().__init__(name, config)
        self._encoder = encoder
        self._batch_size: int = config["batch_size"]
        self._sequence_mode: str = config["sequence_features"]
        self._model_dir = model_dir

    @staticmethod
    def resolve_model_dir(config: Dict[Text, Any]) -> Path:
        """Return the model directory from the config, or else from the settings.

        Args:
            config: The component config.

        Returns:
            The absolute model directory.
        """
        configured = config.get("model_dir")
        if configured:
            return Path(configured).expanduser().resolve()
        return get_settings().embedding_model_dir

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "MiniLMFeaturizer":
        """Creates the component and loads the encoder (see parent class)."""
        cls.validate_config(config)
        model_dir = cls.resolve_model_dir(config)
        num_layers = config.get("num_layers")
        try:
            encoder = _shared_encoder(
                str(model_dir),
                int(config["max_length"]),
                None if num_layers is None else int(num_layers),
                str(config.get("backend", "auto")),
            )
        except ValueError as error:  # e.g. num_layers above the model's layer count
            raise InvalidConfigException(f"MiniLMFeaturizer: {error}") from error
        return cls(config, execution_context.node_name, encoder, model_dir)

    @classmethod
    def load(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> "MiniLMFeaturizer":
        """Loads the component: nothing is persisted, so this is :meth:`create`."""
        return cls.create(config, model_storage, resource, execution_context)

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Featurizes text, response and action text of all training examples.

        Args:
            training_data: The training data (changed in place).

        Returns:
            The same training data.
        """
        self._featurize(
            training_data.training_examples, DENSE_FEATURIZABLE_ATTRIBUTES,
            cache=self._training_cache(),
        )
        return training_data

    def _training_cache(self) -> Optional[EmbeddingCache]:
        """The cache of the last training run's vectors, or None where it does not apply."""
        directory = get_settings().embedding_cache_dir
        if (
            directory is None
            or self._model_dir is None
            or not self._config.get("training_cache", True)
            or self._sequence_mode == "tokens"  # token vectors are not cached
        ):
            return None
        try:
            key = encoder_key(self._model_dir, self._encoder.num_layers, self._encoder.max_length)
        except OSError as error:
            logger.warning("MiniLMFeaturizer: no embedding cache (%s)", error)
            return None
        return EmbeddingCache(directory, key, self._encoder.dim)

    def process(self, messages: List[Message]) -> List[Message]:
        """Featurizes the text (and action text) of incoming messages.

        Args:
            messages: The messages (changed in place).

        Returns:
            The same messages.
        """
        self._featurize(messages, _PROCESS_ATTRIBUTES)
        return messages

    def _featurize(
        self, messages: List[Message], attributes: Any, cache: Optional[EmbeddingCache] = None
    ) -> None:
        """Embed every non-empty attribute of the messages in one batched call.

        With a ``cache`` (training, sentence-level modes), only the texts the last run
        did not see are embedded; the cache then holds this run's texts.
        """
        jobs: List[Tuple[Message, Text]] = [
            (message, attribute)
            for message in messages
            for attribute in attributes
            if message.get(attribute)
        ]
        if not jobs:
            return
        texts = [str(message.get(attribute)) for message, attribute in jobs]
        tokens = [message.get(TOKENS_NAMES[attribute]) for message, attribute in jobs]
        if self._sequence_mode == "tokens":
            spans = [[(t.start, t.end) for t in (toks or [])] for toks in tokens]
            sentences, token_vectors = self._encoder.encode_with_spans(
                texts, spans, batch_size=self._batch_size
            )
        elif cache is not None:
            sentences, missing = cache.lookup(texts)
            if missing:
                sentences[missing] = self._encoder.encode(
                    [texts[i] for i in missing], batch_size=self._batch_size
                )
            logger.info(
                "MiniLMFeaturizer: embedded %d of %d texts (the rest from %s)",
                len(missing), len(texts), cache.path,
            )
            cache.save(texts, sentences)
            token_vectors = [
                self._plain_sequence(sentence, len(toks or []))
                for sentence, toks in zip(sentences, tokens)
            ]
        else:
            sentences = self._encoder.encode(texts, batch_size=self._batch_size)
            token_vectors = [
                self._plain_sequence(sentence, len(toks or []))
                for sentence, toks in zip(sentences, tokens)
            ]

        for (message, attribute), sentence, sequence, toks in zip(
            jobs, sentences, token_vectors, tokens
        ):
            if toks is None:
                logger.debug(
                    "MiniLMFeaturizer: no tokens for '%s' (is a tokenizer in the "
                    "pipeline?); adding sentence features only",
                    attribute,
                )
            self.add_features_to_message(
                sequence=sequence if toks is not None else None,
                sentence=sentence[None, :],
                attribute=attribute,
                message=message,
            )

    def _plain_sequence(self, sentence: np.ndarray, n_tokens: int) -> np.ndarray:
        """Sequence rows for the ``sentence`` and ``zeros`` modes."""
        if self._sequence_mode == "sentence":
            return np.repeat(sentence[None, :], n_tokens, axis=0)
        return np.zeros((n_tokens, sentence.shape[0]), dtype=np.float32)


def encoder_for(
    model_dir: Optional[Path] = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    num_layers: Optional[int] = None,
    backend: str = "auto",
) -> MiniLMEncoder:
    """Return the process-wide encoder for a model directory (loaded on first use).

    Args:
        model_dir: The model directory (default: the EMBEDDING_MODEL_DIR setting).
        max_length: Word pieces per text.
        num_layers: Transformer layers to run (default: all).
        backend: The forward pass (see :data:`bot.nlu.minilm.BACKENDS`).

    Returns:
        The shared encoder.
    """
    directory = (model_dir or get_settings().embedding_model_dir).resolve()
    return _shared_encoder(str(directory), max_length, num_layers, backend)
