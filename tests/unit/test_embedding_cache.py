"""The training-time embedding cache (bot/nlu/embedding_cache.py) with the real encoder."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List

import numpy as np
import pytest

from bot.nlu.embedding_cache import EmbeddingCache, encoder_key
from bot.settings import get_settings
from tests.unit.nlu_helpers import make_featurizer, tokenized

TEXTS = ["where is my order?", "cancel it please", "I want a refund", "hi"]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "cache"
    monkeypatch.setenv("EMBEDDING_CACHE_DIR", str(directory))
    get_settings.cache_clear()
    yield directory
    get_settings.cache_clear()


def _training_data(texts: List[str]) -> Any:
    from rasa.shared.nlu.training_data.training_data import TrainingData

    return TrainingData(training_examples=[tokenized(text) for text in texts])


class _Counting:
    """Wraps the encoder and records every text it embeds."""

    def __init__(self, encoder: Any) -> None:
        self._encoder = encoder
        self.embedded: List[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def encode(self, texts: List[str], batch_size: int = 64) -> np.ndarray:
        self.embedded.extend(texts)
        return self._encoder.encode(texts, batch_size=batch_size)


def _sentences(data: Any) -> Dict[str, np.ndarray]:
    from rasa.shared.nlu.constants import TEXT

    return {m.get(TEXT): m.get_dense_features(TEXT)[1].features[0]
            for m in data.training_examples}


def _train(model_dir: Path, texts: List[str]) -> Any:
    featurizer = make_featurizer(model_dir, sequence_features="zeros")
    counting = _Counting(featurizer._encoder)
    featurizer._encoder = counting
    data = featurizer.process_training_data(_training_data(texts))
    return counting.embedded, _sentences(data)


def test_a_retrain_embeds_only_new_texts(model_dir: Path, cache_dir: Path) -> None:
    embedded, first = _train(model_dir, TEXTS)
    assert sorted(embedded) == sorted(TEXTS)
    files = list(cache_dir.glob("*.npz"))
    assert len(files) == 1

    changed = TEXTS[:3] + ["track parcel 104233"]
    embedded, second = _train(model_dir, changed)
    assert embedded == ["track parcel 104233"]
    for text in TEXTS[:3]:
        np.testing.assert_allclose(second[text], first[text], atol=1e-6)
    # the same vector as without any cache
    np.testing.assert_allclose(second["track parcel 104233"],
                               make_featurizer(model_dir)._encoder.encode_one("track parcel 104233"),
                               atol=1e-5)

    # the file now holds exactly the last run's texts ("hi" is gone)
    again = _train(model_dir, ["hi"])[0]
    assert again == ["hi"]


def test_a_broken_cache_file_is_ignored_and_rewritten(
    model_dir: Path, cache_dir: Path
) -> None:
    _train(model_dir, TEXTS)
    (path,) = cache_dir.glob("*.npz")
    path.write_bytes(b"not a zip file")
    embedded, sentences = _train(model_dir, TEXTS)
    assert sorted(embedded) == sorted(TEXTS)
    assert len(EmbeddingCache(cache_dir, path.stem, 384)) == len(TEXTS)
    assert set(sentences) == set(TEXTS)


def test_the_key_follows_the_layer_count_and_length(model_dir: Path) -> None:
    keys = {encoder_key(model_dir, layers, length)
            for layers, length in ((6, 128), (4, 128), (6, 64))}
    assert len(keys) == 3
    assert encoder_key(model_dir, 6, 128) == encoder_key(model_dir, 6, 128)


def test_off_and_token_mode_use_no_cache(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMBEDDING_CACHE_DIR", "off")
    get_settings.cache_clear()
    try:
        assert get_settings().embedding_cache_dir is None
        assert make_featurizer(model_dir, sequence_features="zeros")._training_cache() is None
        monkeypatch.setenv("EMBEDDING_CACHE_DIR", str(tmp_path / "c"))
        get_settings.cache_clear()
        assert make_featurizer(model_dir, sequence_features="tokens")._training_cache() is None
        assert make_featurizer(model_dir, sequence_features="zeros",
                           training_cache=False)._training_cache() is None
        assert make_featurizer(model_dir, sequence_features="zeros")._training_cache() is not None
    finally:
        get_settings.cache_clear()


def test_training_cache_must_be_a_boolean(model_dir: Path) -> None:
    from rasa.shared.exceptions import InvalidConfigException

    with pytest.raises(InvalidConfigException, match="training_cache"):
        make_featurizer(model_dir, training_cache="yes")
