"""Reliability of the intent confidences, and the "not sure" threshold chosen from data.

1. Out-of-fold: 5-fold cross-validation over the training data with the same features
   and classifier as the Rasa pipeline (MiniLM embeddings with the layer count of
   ``config.yml`` + word/char n-grams, linear SVM, temperature scaling). Only the hand-written, realistic-style files
   (data/nlu/paraphrases.yml, data/nlu/extra.yml) are scored, since the Bitext part is
   templated. The threshold is the lowest confidence at which the accepted shop intents
   are at least ``--target`` accurate and at most ``--max-leak`` of the out-of-scope
   examples are accepted as a shop intent.
2. The trained model (models/support.tar.gz) on the held-out sets: a reliability table
   per confidence bin for tests/nlu/realistic.yml and tests/nlu/bitext_holdout.yml.

Usage: python bench/calibration.py [--target 0.97] [--model models/support.tar.gz]
       [--num-layers N] [--skip-cv] [--skip-model]
Prints Markdown tables (pasted into docs/nlu.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BINS = (0.0, 0.3, 0.45, 0.6, 0.75, 0.9, 0.97, 1.0001)
NOT_A_SHOP_INTENT = {"out_of_scope", "nlu_fallback"}


def load(path: Path) -> Tuple[List[str], List[str]]:
    from rasa.shared.nlu.training_data.loading import load_data

    data = load_data(str(path))
    return [m.get("text") for m in data.intent_examples], [m.get("intent") for m in data.intent_examples]


def reliability(conf: np.ndarray, correct: np.ndarray) -> str:
    rows = ["| confidence | messages | mean confidence | accuracy |", "| --- | --- | --- | --- |"]
    for low, high in zip(BINS, BINS[1:]):
        sel = (conf >= low) & (conf < high)
        if sel.any():
            rows.append(
                f"| {low:.2f}-{min(high, 1.0):.2f} | {sel.sum()} | {conf[sel].mean():.3f} | "
                f"{correct[sel].mean():.3f} |"
            )
    gap = np.sum([abs(conf[(conf >= a) & (conf < b)].mean() - correct[(conf >= a) & (conf < b)].mean())
                  * ((conf >= a) & (conf < b)).sum() for a, b in zip(BINS, BINS[1:])
                  if ((conf >= a) & (conf < b)).any()]) / len(conf)
    rows.append(f"\nExpected calibration error: {gap:.3f}")
    return "\n".join(rows)


def pipeline_num_layers() -> Optional[int]:
    """The ``num_layers`` of the MiniLMFeaturizer in ``config.yml`` (None: all layers)."""
    import yaml

    config = yaml.safe_load((ROOT / "config.yml").read_text(encoding="utf-8"))
    for component in config.get("pipeline") or []:
        if str(component.get("name", "")).endswith("MiniLMFeaturizer"):
            return component.get("num_layers")
    return None


def out_of_fold(target: float, max_leak: float, num_layers: Optional[int] = None) -> float:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.model_selection import StratifiedKFold

    from bot.nlu.intent_classifier import _softmax, fit_linear, fit_temperature
    from bot.nlu.minilm import MiniLMEncoder
    from bot.settings import get_settings

    files = [ROOT / "data/nlu/bitext/nlu.yml", ROOT / "data/nlu/extra.yml", ROOT / "data/nlu/paraphrases.yml"]
    texts: List[str] = []
    labels: List[str] = []
    scored: List[bool] = []
    for path in files:
        x, y = load(path)
        texts += x
        labels += y
        scored += [path.name != "nlu.yml"] * len(x)
    y_all = np.array(labels)
    scored_mask = np.array(scored)
    encoder = MiniLMEncoder.load(get_settings().embedding_model_dir,
                                 num_layers=num_layers or pipeline_num_layers())
    print(f"MiniLM: {encoder.num_layers} layers ({encoder.backend})", flush=True)
    dense = encoder.encode(texts)
    conf = np.zeros(len(texts))
    pred = np.empty(len(texts), dtype=object)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=20261122)
    for number, (train, test) in enumerate(folds.split(texts, y_all), 1):
        word = CountVectorizer(ngram_range=(1, 2)).fit([texts[i] for i in train])
        char = CountVectorizer(analyzer="char_wb", ngram_range=(2, 4)).fit([texts[i] for i in train])

        def features(rows: Sequence[int]) -> scipy.sparse.csr_matrix:
            chosen = [texts[i] for i in rows]
            sparse = scipy.sparse.hstack([word.transform(chosen), char.transform(chosen)]).tocsr()
            sparse = sparse.astype(np.float32)
            sparse.data = np.log1p(sparse.data)
            norms = np.sqrt(np.asarray(sparse.multiply(sparse).sum(axis=1))).ravel()
            norms[norms == 0] = 1
            sparse = scipy.sparse.diags(1 / norms) @ sparse
            return scipy.sparse.hstack([sparse, scipy.sparse.csr_matrix(dense[rows])]).tocsr()

        rng = np.random.default_rng(number)
        calib = rng.random(len(train)) < 0.2
        classes = np.array(sorted(set(y_all)))
        index = {c: i for i, c in enumerate(classes)}
        y_idx = np.array([index[v] for v in y_all])
        weights, bias = fit_linear(features(train[~calib]), y_idx[train[~calib]], "svm", 1.0, 300, 0)
        held = np.asarray(features(train[calib]) @ weights.T) + bias
        temperature = fit_temperature(held, y_idx[train[calib]])
        weights, bias = fit_linear(features(train), y_idx[train], "svm", 1.0, 300, 0)
        probs = _softmax((np.asarray(features(test) @ weights.T) + bias) / temperature)
        conf[test] = probs.max(axis=1)
        pred[test] = classes[probs.argmax(axis=1)]
        print(f"fold {number}: temperature {temperature:.3f}", flush=True)

    conf, pred, gold = conf[scored_mask], pred[scored_mask], y_all[scored_mask]
    correct = pred == gold
    print("\n### Out-of-fold, hand-written training examples\n")
    print(reliability(conf, correct))
    off_topic = gold == "out_of_scope"
    shop = ~np.isin(pred, list(NOT_A_SHOP_INTENT))
    print("\n| threshold | in-scope messages accepted | accuracy of accepted | off-topic answered as a shop intent |")
    print("| --- | --- | --- | --- |")
    chosen = None
    for threshold in np.round(np.arange(0.30, 0.96, 0.05), 2):
        accepted = (conf >= threshold) & shop & ~off_topic
        accuracy = correct[accepted].mean() if accepted.any() else 1.0
        leak = np.mean(off_topic[off_topic] & (conf[off_topic] >= threshold) & shop[off_topic])
        print(f"| {threshold:.2f} | {accepted.sum() / (~off_topic).sum():.1%} | {accuracy:.3f} | {leak:.1%} |")
        if chosen is None and accuracy >= target and leak <= max_leak:
            chosen = float(threshold)
    chosen = 0.95 if chosen is None else chosen
    print(f"\nchosen threshold {chosen:.2f} (lowest with accuracy >= {target} and off-topic leak <= {max_leak:.0%})")
    return chosen


def model_tables(model: Path) -> None:
    from bot.nlu_runtime import load_interpreter

    parse = load_interpreter(model)
    for name in ("realistic", "bitext_holdout"):
        texts, gold = load(ROOT / "tests" / "nlu" / f"{name}.yml")
        parsed = [parse(t)["intent"] for t in texts]
        conf = np.array([p.get("confidence") or 0.0 for p in parsed])
        pred = np.array([p.get("name") for p in parsed])
        gold_arr = np.array(gold)
        print(f"\n### Trained model on tests/nlu/{name}.yml ({len(texts)} messages, "
              f"accuracy {np.mean(pred == gold_arr):.3f})\n")
        print(reliability(conf, pred == gold_arr))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--max-leak", type=float, default=0.02)
    parser.add_argument("--model", default=str(ROOT / "models" / "support.tar.gz"))
    parser.add_argument("--skip-cv", action="store_true")
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--num-layers", type=int, default=None,
                        help="MiniLM layers for the cross-validation (default: as in config.yml)")
    args = parser.parse_args()
    if not args.skip_cv:
        out_of_fold(args.target, args.max_leak, args.num_layers)
    if not args.skip_model:
        model_tables(Path(args.model))


if __name__ == "__main__":
    main()
