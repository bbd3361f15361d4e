"""Helpers for the tests of the NLU components: a featurizer and tokenized messages."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def make_featurizer(model_dir: Path, **overrides: Any) -> Any:
    """A ``MiniLMFeaturizer`` for ``model_dir`` with the default config plus ``overrides``."""
    from rasa.engine.graph import ExecutionContext, GraphSchema
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource

    from bot.nlu.embedding_featurizer import MiniLMFeaturizer

    config = {**MiniLMFeaturizer.get_default_config(), "model_dir": str(model_dir), **overrides}
    return MiniLMFeaturizer.create(
        config,
        LocalModelStorage(Path("/nonexistent")),
        Resource("minilm"),
        ExecutionContext(GraphSchema({}), node_name="minilm_featurizer"),
    )


def tokenized(text: str) -> Any:
    """A message with ``text``, tokenized by Rasa's ``WhitespaceTokenizer``."""
    from rasa.nlu.tokenizers.whitespace_tokenizer import WhitespaceTokenizer
    from rasa.shared.nlu.constants import TEXT
    from rasa.shared.nlu.training_data.message import Message

    tokenizer = WhitespaceTokenizer(WhitespaceTokenizer.get_default_config())
    message = Message(data={TEXT: text})
    tokenizer.process([message])
    return message
