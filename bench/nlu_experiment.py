"""Compare intent-classifier variants quickly, outside Rasa (same features as the pipeline).

Trains on ``data/nlu`` and scores every ``--test`` set. The sparse block is the
pipeline's word 1-2-gram and char_wb 2-4-gram counts (log1p, unit rows); the dense
block is the MiniLM sentence embedding computed with the first ``--num-layers``
transformer layers (each count gives its own variant). Embeddings are cached in
``/tmp/nlu_experiment_cache.npz``, keyed by layer count and text.

Usage::

    python bench/nlu_experiment.py [--test tests/nlu/realistic.yml ...]
        [--num-layers 6 4 3] [--grid] [--spacy]

Without ``--grid`` it runs the pipeline's classifier (linear SVM, C=1, weights 1:1,
temperature fitted on a held-out 20%); ``--grid`` runs the older logistic-regression
grid too. For each variant it prints the accuracy per test set, how many
``out_of_scope`` test messages got a shop intent with confidence >= 0.5 and >= the
``not_understood_below`` threshold of ``data/triage.yml``, and the fit time.

``--spacy`` adds the spaCy variants (what Rasa's ``SpacyNLP`` + ``SpacyTokenizer`` with
``use_lemma`` would feed a ``CountVectorsFeaturizer``): a blank English pipeline with the
lookup lemmatizer of ``spacy-lookups-data`` (no downloaded model), lemma 1-2-gram counts
either added to the sparse block or replacing the word n-grams, and the lemmatizer's cost
per message.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CACHE_FILE = Path("/tmp/nlu_experiment_cache.npz")
NOT_A_SHOP_INTENT = ("out_of_scope", "nlu_fallback")


def load(path: Path, exclude: Sequence[str] = ()) -> Tuple[List[str], List[str]]:
    """Texts and intents of a Rasa NLU file or of every NLU file under a directory.

    Args:
        path: A YAML file or a directory.

    Returns:
        The texts and their intents.
    """
    from rasa.shared.data import get_data_files, is_nlu_file
    from rasa.shared.nlu.training_data.loading import load_data

    files = get_data_files([str(path)], is_nlu_file) if path.is_dir() else [str(path)]
    files = [f for f in files if not any(Path(f).resolve() == (ROOT / e).resolve() for e in exclude)]
    texts: List[str] = []
    labels: List[str] = []
    for name in files:
        data = load_data(name)
        for message in data.intent_examples:
            texts.append(message.get("text"))
            labels.append(message.get("intent"))
    return texts, labels


def unit_rows(matrix: scipy.sparse.csr_matrix) -> scipy.sparse.csr_matrix:
    """Scale each row to unit L2 length (zero rows stay zero)."""
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1))).ravel()
    norms[norms == 0] = 1
    return scipy.sparse.diags(1 / norms) @ matrix


def threshold_from_triage() -> float:
    """The ``escalation.not_understood_below`` value of ``data/triage.yml``."""
    import yaml

    raw = yaml.safe_load((ROOT / "data" / "triage.yml").read_text(encoding="utf-8"))
    return float(raw["escalation"]["not_understood_below"])


class EmbeddingCache:
    """Sentence embeddings per (layer count, text), kept in a ``.npz`` file."""

    def __init__(self, path: Path) -> None:
        """Read the cache file if there is one.

        Args:
            path: The cache file.
        """
        self.path = path
        self.vectors: Dict[str, np.ndarray] = {}
        if path.exists():
            self.vectors = dict(np.load(path, allow_pickle=True)["cache"].item())

    def encode(self, texts: Sequence[str], num_layers: int) -> np.ndarray:
        """Embed texts with the first ``num_layers`` layers, encoding only new ones.

        Args:
            texts: The texts.
            num_layers: Transformer layers to run.

        Returns:
            ``(len(texts), 384)`` embeddings.
        """
        from bot.nlu.embedding_featurizer import encoder_for

        key = f"{num_layers}\x00"
        missing = [t for t in dict.fromkeys(texts) if key + t not in self.vectors]
        if missing:
            encoder = encoder_for(num_layers=num_layers)
            start = time.perf_counter()
            for text, vector in zip(missing, encoder.encode(missing)):
                self.vectors[key + text] = vector
            print(f"encoded {len(missing)} new texts with {num_layers} layers in "
                  f"{time.perf_counter() - start:.1f}s (load {os.getloadavg()[0]:.2f})", flush=True)
        return np.vstack([self.vectors[key + t] for t in texts])

    def save(self) -> None:
        """Write the cache file."""
        np.savez(self.path, cache=np.array(self.vectors, dtype=object))


def fit_calibrated_svm(
    X: scipy.sparse.csr_matrix, y: np.ndarray, seed: int = 20261122
) -> Tuple[np.ndarray, np.ndarray, float]:
    """The pipeline's classifier: SVM + temperature fitted on a held-out 20% per intent.

    Args:
        X: Training features.
        y: Class indices.
        seed: Random seed of the held-out split.

    Returns:
        Weights, biases and the temperature.
    """
    from bot.nlu.intent_classifier import fit_linear, fit_temperature

    rng = np.random.default_rng(seed)
    held: List[int] = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        rng.shuffle(rows)
        held.extend(rows[: int(round(len(rows) * 0.2)) if len(rows) >= 5 else 0])
    mask = np.zeros(len(y), dtype=bool)
    mask[held] = True
    weights, bias = fit_linear(X[~mask], y[~mask], "svm", 1.0, 300, seed)
    temperature = fit_temperature(np.asarray(X[mask] @ weights.T) + bias, y[mask])
    weights, bias = fit_linear(X, y, "svm", 1.0, 300, seed)
    return weights, bias, temperature


def score(name: str, proba: np.ndarray, classes: np.ndarray, gold: Sequence[str],
          threshold: float) -> List[str]:
    """Accuracy and out-of-scope figures of one test set, as printable fragments."""
    pred = classes[proba.argmax(1)]
    conf = proba.max(1)
    gold_arr = np.array(gold)
    out = [f"{name}={np.mean(pred == gold_arr):.3f}"]
    oos = gold_arr == "out_of_scope"
    if oos.any():
        shop = ~np.isin(pred[oos], NOT_A_SHOP_INTENT)
        out.append(f"oos->shop(>=.5)={int(np.sum(shop & (conf[oos] >= 0.5)))}/{int(oos.sum())}")
        out.append(f"oos->shop(>={threshold:.2f})={int(np.sum(shop & (conf[oos] >= threshold)))}")
    return out


def spacy_variants(tr_x: Sequence[str], y_idx: np.ndarray,
                   tests: Dict[str, Tuple[List[str], List[str]]], classes: np.ndarray,
                   threshold: float, E_tr: np.ndarray, E_te: Dict[str, np.ndarray],
                   word: object, char: object) -> None:
    """Score lemma n-grams (blank English spaCy, lookup lemmatizer) with the same classifier."""
    import spacy
    from sklearn.feature_extraction.text import CountVectorizer

    from bot.nlu.intent_classifier import _softmax

    nlp = spacy.blank("en")
    nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
    nlp.initialize()

    def lemmas(xs: Sequence[str]) -> List[str]:
        return [" ".join(t.lemma_.lower() for t in doc) for doc in nlp.pipe(xs, batch_size=256)]

    start = time.perf_counter()
    tr_l = lemmas(tr_x)
    lemma_s = time.perf_counter() - start
    te_l = {t: lemmas(x) for t, (x, _) in tests.items()}
    sample = list(tests.values())[-1][0][:300]
    start = time.perf_counter()
    for text in sample:
        nlp(text)
    per_message_ms = (time.perf_counter() - start) * 1000 / len(sample)
    lemma_cv = CountVectorizer(ngram_range=(1, 2), lowercase=True,
                               token_pattern=r"(?u)\b\w+\b").fit(tr_l)

    def block(*matrices: scipy.sparse.spmatrix) -> scipy.sparse.csr_matrix:
        m = scipy.sparse.hstack(list(matrices)).tocsr().astype(np.float32)
        m.data = np.log1p(m.data)
        return unit_rows(m)

    variants = {
        "words+chars+lemmas": (
            lambda xs, ls: block(word.transform(xs), char.transform(xs), lemma_cv.transform(ls))),
        "lemmas+chars": (lambda xs, ls: block(lemma_cv.transform(ls), char.transform(xs))),
    }
    print(f"spaCy blank 'en' + lookup lemmatizer: {lemma_s:.1f}s for {len(tr_x)} training "
          f"examples, {per_message_ms:.2f} ms per message", flush=True)
    for name, make in variants.items():
        S_tr = make(tr_x, tr_l)
        start = time.perf_counter()
        weights, bias, temperature = fit_calibrated_svm(
            scipy.sparse.hstack([S_tr, scipy.sparse.csr_matrix(E_tr)]).tocsr(), y_idx)
        took = time.perf_counter() - start
        scores = []
        for t, (x, y) in tests.items():
            features = scipy.sparse.hstack(
                [make(x, te_l[t]), scipy.sparse.csr_matrix(E_te[t])]).tocsr()
            proba = _softmax((np.asarray(features @ weights.T) + bias) / temperature)
            scores += score(Path(t).stem, proba, classes, y, threshold)
        print(f"  spacy {name:<20} T={temperature:.3f} fit {took:5.1f}s  " + "  ".join(scores),
              flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the experiment and print one line per variant.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    from bot.nlu.intent_classifier import _softmax

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", nargs="*",
                        default=["tests/nlu/bitext_holdout.yml", "tests/nlu/realistic.yml"])
    parser.add_argument("--num-layers", nargs="*", type=int, default=[6])
    parser.add_argument("--grid", action="store_true", help="also the logistic-regression grid")
    parser.add_argument("--exclude", nargs="*", default=[],
                        help="training files to leave out (e.g. data/nlu/de.yml data/nlu/fr.yml)")
    parser.add_argument("--add", nargs="*", default=[], help="more training files (variants)")
    parser.add_argument("--spacy", action="store_true",
                        help="also lemma n-grams from a blank spaCy pipeline (lookup lemmas)")
    args = parser.parse_args(argv)

    threshold = threshold_from_triage()
    tr_x, tr_y = load(ROOT / "data" / "nlu", args.exclude)
    for extra in args.add:
        more_x, more_y = load(Path(extra))
        tr_x, tr_y = tr_x + more_x, tr_y + more_y
    tests = {t: load(ROOT / t) for t in args.test}
    cache = EmbeddingCache(CACHE_FILE)
    word = CountVectorizer(ngram_range=(1, 2), lowercase=True).fit(tr_x)
    char = CountVectorizer(analyzer="char_wb", ngram_range=(2, 4), lowercase=True).fit(tr_x)

    def sparse(xs: Sequence[str]) -> scipy.sparse.csr_matrix:
        m = scipy.sparse.hstack([word.transform(xs), char.transform(xs)]).tocsr().astype(np.float32)
        m.data = np.log1p(m.data)
        return unit_rows(m)

    S_tr = sparse(tr_x)
    S_te = {t: sparse(x) for t, (x, _) in tests.items()}
    classes = np.array(sorted(set(tr_y)))
    index = {c: i for i, c in enumerate(classes)}
    y_idx = np.array([index[v] for v in tr_y])

    def feats(S: scipy.sparse.csr_matrix, E: np.ndarray, ws: float = 1.0,
              wd: float = 1.0) -> scipy.sparse.csr_matrix:
        blocks = []
        if ws:
            blocks.append(S * ws)
        if wd:
            blocks.append(scipy.sparse.csr_matrix(E * wd))
        return scipy.sparse.hstack(blocks).tocsr()

    print(f"{len(tr_x)} training examples; threshold {threshold:.2f}; "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    for layers in args.num_layers:
        E_tr = cache.encode(tr_x, layers)
        E_te = {t: cache.encode(x, layers) for t, (x, _) in tests.items()}
        cache.save()
        start = time.perf_counter()
        weights, bias, temperature = fit_calibrated_svm(feats(S_tr, E_tr), y_idx)
        took = time.perf_counter() - start
        scores = []
        for t, (x, y) in tests.items():
            proba = _softmax((np.asarray(feats(S_te[t], E_te[t]) @ weights.T) + bias) / temperature)
            scores += score(Path(t).stem, proba, classes, y, threshold)
        print(f"layers={layers} svm C=1 1:1 T={temperature:.3f} fit {took:5.1f}s  "
              + "  ".join(scores), flush=True)
        if args.spacy:
            spacy_variants(tr_x, y_idx, tests, classes, threshold, E_tr, E_te, word, char)
        if not args.grid:
            continue
        variants = {"sparse only": (1.0, 0.0), "dense only": (0.0, 1.0), "both 1:1": (1.0, 1.0),
                    "both 1:2": (1.0, 2.0), "both 0.5:1": (0.5, 1.0)}
        for C in (1.0, 10.0):
            for name, (ws, wd) in variants.items():
                start = time.perf_counter()
                clf = LogisticRegression(C=C, max_iter=300, class_weight="balanced")
                clf.fit(feats(S_tr, E_tr, ws, wd), tr_y)
                took = time.perf_counter() - start
                scores = []
                for t, (x, y) in tests.items():
                    proba = clf.predict_proba(feats(S_te[t], E_te[t], ws, wd))
                    scores += score(Path(t).stem, proba, clf.classes_, y, threshold)
                print(f"layers={layers} logistic C={C:<5} {name:<12} fit {took:5.1f}s  "
                      + "  ".join(scores), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
