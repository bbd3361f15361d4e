"""Compare intent-classifier variants quickly, outside Rasa (same features as the pipeline).

Usage: python bench/nlu_experiment.py [--test tests/nlu/realistic.yml ...]
Prints accuracy on each test set for each variant, and training time.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np
import scipy.sparse
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load(path: Path) -> Tuple[List[str], List[str]]:
    from rasa.shared.data import get_data_files
    from rasa.shared.nlu.training_data.loading import load_data
    from rasa.shared.data import is_nlu_file

    files = get_data_files([str(path)], is_nlu_file) if path.is_dir() else [str(path)]
    texts, labels = [], []
    for f in files:
        d = load_data(f)
        for m in d.intent_examples:
            texts.append(m.get("text"))
            labels.append(m.get("intent"))
    return texts, labels


def unit(m):
    n = np.sqrt(np.asarray(m.multiply(m).sum(axis=1))).ravel()
    n[n == 0] = 1
    return scipy.sparse.diags(1 / n) @ m


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--test", nargs="*", default=["tests/nlu/bitext_holdout.yml"])
    args = parser.parse_args()
    from bot.nlu.minilm import MiniLMEncoder
    from bot.settings import get_settings

    enc = MiniLMEncoder.load(get_settings().embedding_model_dir)
    tr_x, tr_y = load(ROOT / "data" / "nlu")
    tests = {t: load(ROOT / t) for t in args.test}
    cache_file = Path("/tmp/nlu_experiment_cache.npz")
    cache = dict(np.load(cache_file, allow_pickle=True)["cache"].item()) if cache_file.exists() else {}

    def encode(texts):
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            t0 = time.time()
            for t, v in zip(missing, enc.encode(missing)):
                cache[t] = v
            print(f"encoded {len(missing)} new texts in {time.time()-t0:.1f}s", flush=True)
        return np.vstack([cache[t] for t in texts])

    E_tr = encode(tr_x)
    E_te = {t: encode(x) for t, (x, _) in tests.items()}
    np.savez(cache_file, cache=np.array(cache, dtype=object))
    word = CountVectorizer(ngram_range=(1, 2), lowercase=True)
    char = CountVectorizer(analyzer="char_wb", ngram_range=(2, 4), lowercase=True)
    W_tr = word.fit_transform(tr_x); C_tr = char.fit_transform(tr_x)

    def sparse(xs, fit=False):
        m = scipy.sparse.hstack([word.transform(xs), char.transform(xs)]).tocsr().astype(np.float32)
        m.data = np.log1p(m.data)
        return unit(m)

    S_tr = sparse(tr_x); S_te = {t: sparse(x) for t, (x, _) in tests.items()}
    variants = {
        "sparse only": (1.0, 0.0),
        "dense only": (0.0, 1.0),
        "both 1:1": (1.0, 1.0),
        "both 1:2": (1.0, 2.0),
        "both 0.5:1": (0.5, 1.0),
    }
    for C in (1.0, 10.0):
        for name, (ws, wd) in variants.items():
            def feats(S, E):
                blocks = []
                if ws: blocks.append(S * ws)
                if wd: blocks.append(scipy.sparse.csr_matrix(E * wd))
                return scipy.sparse.hstack(blocks).tocsr()
            t0 = time.time()
            clf = LogisticRegression(C=C, max_iter=300, class_weight="balanced")
            clf.fit(feats(S_tr, E_tr), tr_y)
            took = time.time() - t0
            scores = []
            for t, (x, y) in tests.items():
                proba = clf.predict_proba(feats(S_te[t], E_te[t]))
                pred = clf.classes_[proba.argmax(1)]
                y = np.array(y)
                scores.append(f"{Path(t).stem}={np.mean(pred == y):.3f}")
                oos = y == "out_of_scope"
                if oos.any():
                    conf = proba.max(1)
                    shop_wrong = np.mean((pred[oos] != "out_of_scope") & (conf[oos] >= 0.5))
                    scores.append(f"shop-intent-on-oos(conf>=.5)={shop_wrong:.3f}")
                    inscope = ~oos
                    scores.append(f"inscope={np.mean(pred[inscope] == y[inscope]):.3f}")
            print(f"C={C:<5} {name:<12} train {took:5.1f}s  " + "  ".join(scores), flush=True)


if __name__ == "__main__":
    main()
