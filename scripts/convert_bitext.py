#!/usr/bin/env python3
"""Convert the Bitext customer-service dataset into Rasa 3 NLU YAML.

Re-runnable and deterministic: the same CSV content (in any row order) always
produces byte-identical output files.

Inputs (the dataset directory, resolved in this order):
    1. ``--source DIR``
    2. environment variable ``BITEXT_DIR``
    3. ``<repo root>/../shared/datasets/bitext-customer-service/``

Outputs (relative to the repo root):
    data/nlu/bitext/nlu.yml         training part (~90 % of every intent)
    tests/nlu/bitext_holdout.yml    held-out part (10 % of every intent,
                                    round half up); never used for training
    data/nlu/bitext/LICENSE.txt     verbatim copy of the dataset licence
    data/nlu/bitext/SOURCE.md       provenance note + the dataset README

Processing:
    * intent names are kept unchanged;
    * utterances are cleaned: Unicode NFKC, control/format characters dropped,
      the characters ``[ ] ( ) { }`` (which Rasa's entity annotation syntax
      would read as markup) replaced by spaces, whitespace collapsed;
    * duplicates are removed using a case-, whitespace- and
      punctuation-insensitive key (see ``normalise``).  If the same key occurs
      under two or more intents, *all* its copies are dropped and reported;
    * split: per intent, the examples are sorted (by key, then text), shuffled
      with ``random.Random(f"{SEED}/{intent}")`` and the first
      ``holdout_size(n) == (n + 5) // 10`` (10 %, round half up) become the
      hold-out set.

Usage:
    python scripts/convert_bitext.py            # (re)write the files
    python scripts/convert_bitext.py --check    # exit 1 if files are stale

Only the standard library is used.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import sys
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE_REL = "../shared/datasets/bitext-customer-service"
ENV_VAR = "BITEXT_DIR"
CSV_NAME = "customer_service_training.csv"
EXPECTED_COLUMNS = ("flags", "utterance", "category", "intent")

SEED = 20261122
HOLDOUT_PERCENT = 10

TRAIN_PATH = Path("data/nlu/bitext/nlu.yml")
HOLDOUT_PATH = Path("tests/nlu/bitext_holdout.yml")
LICENSE_PATH = Path("data/nlu/bitext/LICENSE.txt")
SOURCE_NOTE_PATH = Path("data/nlu/bitext/SOURCE.md")

REGENERATE_CMD = "`python scripts/convert_bitext.py` (or `make data`)"

# Characters Rasa's markdown-like entity syntax uses: [text](entity),
# [text]{"entity": ...}, [text][{...}].  They never carry meaning in this
# dataset, so they are replaced by a space.
_MARKUP_CHARS = re.compile(r"[\[\]\(\)\{\}]")
_WHITESPACE = re.compile(r"\s+")
_NON_WORD = re.compile(r"[^\w\s]")
_INTENT_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def holdout_size(n: int) -> int:
    """10 % of ``n`` rounded half up (e.g. 305 -> 31, 304 -> 30, 295 -> 30)."""
    return (n * HOLDOUT_PERCENT + 50) // 100


def clean_text(text: str) -> str:
    """Return ``text`` safe for a Rasa YAML block-scalar example line."""
    text = unicodedata.normalize("NFKC", text)
    # drop control / format / unassigned / surrogate / private-use chars
    # (YAML forbids most of them, and they are invisible anyway)
    text = "".join(
        ch if not unicodedata.category(ch).startswith("C") else " " for ch in text
    )
    text = _MARKUP_CHARS.sub(" ", text)
    text = _WHITESPACE.sub(" ", text).strip()
    # a leading "- " would be eaten by Rasa's example parser
    text = text.lstrip("- ").strip()
    return text


def normalise(text: str) -> str:
    """Comparison key: case-, whitespace- and punctuation-insensitive."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _NON_WORD.sub(" ", text)
    return _WHITESPACE.sub(" ", text).strip()


@dataclass
class Result:
    train: Dict[str, List[str]]
    holdout: Dict[str, List[str]]
    rows_read: int = 0
    cleaned: int = 0  # rows whose text changed during cleaning
    empty: List[Tuple[int, str]] = field(default_factory=list)
    duplicates: List[Tuple[str, List[str]]] = field(default_factory=list)
    conflicts: List[Tuple[str, Dict[str, List[str]]]] = field(default_factory=list)


def resolve_source(cli_value: Optional[str]) -> Path:
    if cli_value:
        return Path(cli_value).expanduser().resolve()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT / DEFAULT_SOURCE_REL).resolve()


def read_rows(csv_path: Path) -> List[Tuple[int, str, str]]:
    """Return ``(line_number, utterance, intent)`` for every CSV row."""
    with csv_path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in EXPECTED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(f"{csv_path}: missing column(s) {missing}")
        rows = []
        for row in reader:
            intent = (row["intent"] or "").strip()
            if not _INTENT_NAME.match(intent):
                raise SystemExit(
                    f"{csv_path}:{reader.line_num}: bad intent name {intent!r}"
                )
            rows.append((reader.line_num, row["utterance"] or "", intent))
    return rows


def convert(rows: Sequence[Tuple[int, str, str]]) -> Result:
    result = Result(train={}, holdout={}, rows_read=len(rows))

    # key -> intent -> list of cleaned texts
    by_key: Dict[str, Dict[str, List[str]]] = defaultdict(lambda: defaultdict(list))
    for line, raw, intent in rows:
        text = clean_text(raw)
        if text != raw:
            result.cleaned += 1
        key = normalise(text)
        if not key:
            result.empty.append((line, raw))
            continue
        by_key[key][intent].append(text)

    per_intent: Dict[str, List[Tuple[str, str]]] = defaultdict(list)
    all_intents = set()
    for key in sorted(by_key):
        intents = by_key[key]
        all_intents.update(intents)
        if len(intents) > 1:
            result.conflicts.append(
                (key, {i: sorted(t) for i, t in sorted(intents.items())})
            )
            continue
        (intent, texts), = intents.items()
        texts = sorted(texts)
        if len(texts) > 1:
            result.duplicates.append((intent, texts))
        per_intent[intent].append((key, texts[0]))

    for intent in sorted(all_intents):
        items = sorted(per_intent.get(intent, []))
        rng = random.Random(f"{SEED}/{intent}")
        shuffled = list(items)
        rng.shuffle(shuffled)
        k = holdout_size(len(shuffled))
        result.holdout[intent] = [t for _, t in sorted(shuffled[:k])]
        result.train[intent] = [t for _, t in sorted(shuffled[k:])]
    return result


def render_nlu(examples: Dict[str, List[str]], header: str) -> str:
    lines = [f"# {h}".rstrip() for h in header.splitlines()]
    lines += ['version: "3.1"', "", "nlu:"]
    for intent in sorted(examples):
        if not examples[intent]:
            continue
        lines.append(f"- intent: {intent}")
        lines.append("  examples: |")
        lines.extend(f"    - {text}" for text in examples[intent])
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def render_source_note(result: Result, dataset_readme: str) -> str:
    n_train = sum(map(len, result.train.values()))
    n_hold = sum(map(len, result.holdout.values()))
    return f"""# Source of `data/nlu/bitext/`

Generated file, do not edit by hand. Regenerate with {REGENERATE_CMD}.

- **Dataset:** Bitext Sample Customer Service Training Dataset
  (Bitext Innovations, 2022), file `{CSV_NAME}`
  (columns `flags,utterance,category,intent`; only `utterance` and `intent` are used).
- **Where it is read from:** `{DEFAULT_SOURCE_REL}/` relative to the repository
  root, overridable with `--source DIR` or the `{ENV_VAR}` environment variable.
- **Licence:** Community Data License Agreement – Sharing, Version 1.0
  (CDLA-Sharing-1.0). The full text is in `LICENSE.txt` next to this file and must
  stay with any copy of the data. Derived files: `data/nlu/bitext/nlu.yml` and
  `tests/nlu/bitext_holdout.yml`.
- **Processing** (`scripts/convert_bitext.py`): intent names unchanged; text
  NFKC-normalised, control characters and `[ ] ( ) {{ }}` (Rasa annotation syntax)
  replaced by spaces, whitespace collapsed; duplicates removed with a case-,
  whitespace- and punctuation-insensitive key (an utterance found under two
  intents would be dropped entirely).
- **Split:** fixed, stratified per intent. Each intent's examples are sorted, shuffled
  with `random.Random("{SEED}/<intent>")`, and `(n + 5) // 10` of them (10 %,
  round half up) are held out in `tests/nlu/bitext_holdout.yml`. That file is never
  used for training.
- **Counts:** {result.rows_read} CSV rows -> {n_train + n_hold} unique examples in
  {len(result.train)} intents: {n_train} training, {n_hold} hold-out
  ({len(result.duplicates)} duplicate groups merged,
  {len(result.conflicts)} cross-intent conflicts dropped, {len(result.empty)} empty rows).

---

The dataset's own README, copied verbatim:

{dataset_readme.rstrip()}
"""


def build_outputs(source: Path) -> Tuple[Dict[Path, bytes], Result]:
    csv_path = source / CSV_NAME
    if not csv_path.is_file():
        raise SystemExit(
            f"dataset not found: {csv_path}\n"
            f"(pass --source DIR or set {ENV_VAR})"
        )
    result = convert(read_rows(csv_path))
    n_train = sum(map(len, result.train.values()))
    n_hold = sum(map(len, result.holdout.values()))
    common = (
        "Generated by scripts/convert_bitext.py -- DO NOT EDIT, regenerate instead.\n"
        "Source: Bitext Sample Customer Service Training Dataset, CDLA-Sharing-1.0\n"
        "(see data/nlu/bitext/SOURCE.md and LICENSE.txt).\n"
    )
    train_yaml = render_nlu(
        result.train,
        common + f"Training part: {n_train} examples, {len(result.train)} intents.\n",
    )
    holdout_yaml = render_nlu(
        result.holdout,
        common
        + f"HELD-OUT part: {n_hold} examples ({HOLDOUT_PERCENT} % of every intent,"
        " round half up).\nNever train on this file; it is for `rasa test nlu` only.\n",
    )
    license_bytes = (source / "LICENSE.txt").read_bytes()
    readme = (source / "README.md").read_text(encoding="utf-8")
    outputs = {
        TRAIN_PATH: train_yaml.encode("utf-8"),
        HOLDOUT_PATH: holdout_yaml.encode("utf-8"),
        LICENSE_PATH: license_bytes,
        SOURCE_NOTE_PATH: render_source_note(result, readme).encode("utf-8"),
    }
    return outputs, result


def print_report(result: Result, out=sys.stdout) -> None:
    width = max(len(i) for i in result.train) if result.train else 10
    print(f"{'intent':<{width}}  {'train':>6}  {'holdout':>7}  {'total':>6}", file=out)
    for intent in sorted(result.train):
        tr, ho = len(result.train[intent]), len(result.holdout[intent])
        print(f"{intent:<{width}}  {tr:>6}  {ho:>7}  {tr + ho:>6}", file=out)
    n_train = sum(map(len, result.train.values()))
    n_hold = sum(map(len, result.holdout.values()))
    print(
        f"{'TOTAL':<{width}}  {n_train:>6}  {n_hold:>7}  {n_train + n_hold:>6}"
        f"   ({len(result.train)} intents, {result.rows_read} CSV rows)",
        file=out,
    )
    print(f"rows changed by cleaning: {result.cleaned}", file=out)
    if result.empty:
        print(f"dropped {len(result.empty)} empty row(s):", file=out)
        for line, raw in result.empty:
            print(f"  line {line}: {raw!r}", file=out)
    if result.duplicates:
        n_dropped = sum(len(t) - 1 for _, t in result.duplicates)
        print(
            f"merged {len(result.duplicates)} duplicate group(s) "
            f"({n_dropped} row(s) dropped):",
            file=out,
        )
        for intent, texts in result.duplicates:
            print(f"  {intent}: {texts}", file=out)
    if result.conflicts:
        print(
            f"dropped {len(result.conflicts)} utterance(s) found under several intents:",
            file=out,
        )
        for key, intents in result.conflicts:
            print(f"  {key!r}: {intents}", file=out)
    else:
        print("no utterance occurs under more than one intent", file=out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source",
        help=f"dataset directory (default: ${ENV_VAR} or "
        f"<repo>/{DEFAULT_SOURCE_REL})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the files on disk differ from the output",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no count table")
    args = parser.parse_args(argv)

    outputs, result = build_outputs(resolve_source(args.source))

    if args.check:
        stale = []
        for rel, content in outputs.items():
            path = REPO_ROOT / rel
            if not path.is_file() or path.read_bytes() != content:
                stale.append(rel)
        if stale:
            for rel in stale:
                print(f"out of date: {rel}", file=sys.stderr)
            print(
                "run `python scripts/convert_bitext.py` to regenerate", file=sys.stderr
            )
            return 1
        if not args.quiet:
            print("bitext NLU files are up to date")
        return 0

    for rel, content in outputs.items():
        path = REPO_ROOT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != content:
            path.write_bytes(content)
            print(f"wrote {rel}")
        else:
            print(f"unchanged {rel}")
    if not args.quiet:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
