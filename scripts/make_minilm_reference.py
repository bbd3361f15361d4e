"""Write ``tests/fixtures/minilm_reference.json`` with an independent implementation.

This script documents where the reference embeddings used by
``tests/unit/test_minilm.py`` come from. It is NOT part of the project's setup
and does not run in the project's virtualenv: it needs PyTorch and Hugging Face
``transformers``, which the project deliberately does without. It embeds a few
fixed sentences with ``transformers.AutoModel`` / ``AutoTokenizer`` loaded from
the same model directory that ``scripts/fetch_embedding_model.py`` fills, then
mean-pools the last hidden states over the attention mask and L2-normalises
(what sentence-transformers does for all-MiniLM-L6-v2), truncating to 128 word
pieces like :mod:`bot.nlu.minilm`. Each sentence is embedded on its own (no
padding). As an extra check, the fast tokenizer's ids are compared with those
of the pure-Python ``BertTokenizer`` built from ``vocab.txt``.

How the committed fixture was produced (throwaway venv, deleted afterwards)::

    python scripts/fetch_embedding_model.py        # model -> var/embeddings/...
    ~/.pyenv/versions/3.11.7/bin/python -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.13.0      # CPU build
    /tmp/refenv/bin/pip install transformers safetensors
    /tmp/refenv/bin/python scripts/make_minilm_reference.py \\
        --model-dir var/embeddings/all-MiniLM-L6-v2 \\
        --out tests/fixtures/minilm_reference.json
    rm -rf /tmp/refenv

(torch 2.13.0+cpu, transformers 5.23.0, Python 3.11.7.)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

MAX_LENGTH = 128

_LONG = (
    "I ordered a pair of running shoes three weeks ago and the tracking page still "
    "says the parcel is waiting at the regional depot. I have called twice, sent "
    "two emails and chatted with an agent who promised a call back within 24 hours, "
    "but nobody ever called. The confirmation email says delivery in 3-5 business "
    "days, which is long past. I need the shoes for a marathon on the 14th, so if "
    "they cannot arrive before then I would like to cancel the order and get a full "
    "refund to my credit card, including the express shipping fee of 9.99 EUR that "
    "I paid for a service I clearly did not get. Please also tell me whether I "
    "have to send anything back if the parcel shows up after I cancel, and who pays "
    "for the return label in that case. Thanks in advance for sorting this out."
)

SENTENCES: List[str] = [
    "Where is my order #A-1043? It hasn't arrived yet!",
    "I'd like a refund — the package arrived damaged 😡",
    "Können Sie mir helfen? Café crème, naïve façade, 東京.",
    "cancel my order",
    "?",
    "",
    _LONG,
]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_reference(model_dir: Path) -> Dict[str, Any]:
    """Embed :data:`SENTENCES` with transformers and return the fixture object.

    Args:
        model_dir: The extracted all-MiniLM-L6-v2 directory.

    Returns:
        The JSON-serialisable fixture.
    """
    import torch
    import transformers
    from transformers import AutoModel, AutoTokenizer, BertTokenizer

    torch.set_grad_enabled(False)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    slow = BertTokenizer(str(model_dir / "vocab.txt"), do_lower_case=True)
    model = AutoModel.from_pretrained(
        str(model_dir), dtype=torch.float32, attn_implementation="eager"
    ).eval()

    vectors: List[List[float]] = []
    token_counts: List[int] = []
    for sentence in SENTENCES:
        batch = tokenizer(
            [sentence], truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
        )
        slow_ids = slow([sentence], truncation=True, max_length=MAX_LENGTH)["input_ids"][0]
        if slow_ids != batch["input_ids"][0].tolist():
            raise SystemExit(f"fast and slow tokenizers disagree on {sentence!r}")
        token_counts.append(len(tokenizer(sentence)["input_ids"]))
        hidden = model(**batch).last_hidden_state  # (1, L, 384)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        vectors.append([round(float(x), 6) for x in pooled[0].tolist()])

    return {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "model_safetensors_sha256": _sha256(model_dir / "model.safetensors"),
        "max_length": MAX_LENGTH,
        "pooling": "mean over attention mask, then L2 normalisation",
        "produced_by": (
            f"scripts/make_minilm_reference.py with torch {torch.__version__}, "
            f"transformers {transformers.__version__}, Python {sys.version.split()[0]}"
        ),
        "untruncated_token_counts": token_counts,
        "sentences": SENTENCES,
        "vectors": vectors,
    }


def main(argv: Optional[List[str]] = None) -> int:
    """Parse arguments, build the fixture and write it.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    fixture = make_reference(args.model_dir.resolve())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(fixture['sentences'])} reference embeddings to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
