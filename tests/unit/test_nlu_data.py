"""Checks on the NLU training data in data/nlu and the held-out set in tests/nlu.

* the Bitext conversion output is up to date (``convert_bitext.py --check``) and
  independent of the CSV row order;
* hold-out and training data are disjoint, stratified 10 % per intent with the
  exact rule ``holdout == (n + 5) // 10`` (round half up), all 27 intents in both;
* data/nlu loads with Rasa and has the expected intents and entities;
* annotations and regexes (order_number, email, phone) agree with each other.
"""

from __future__ import annotations

import csv
import importlib.util
import random
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Set

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "convert_bitext.py"
NLU_DIR = REPO_ROOT / "data" / "nlu"
TRAIN_FILE = NLU_DIR / "bitext" / "nlu.yml"
EXTRA_FILE = NLU_DIR / "extra.yml"
REGEX_FILE = NLU_DIR / "regex.yml"
HOLDOUT_FILE = REPO_ROOT / "tests" / "nlu" / "bitext_holdout.yml"

BITEXT_INTENTS = {
    "cancel_order", "change_order", "change_shipping_address",
    "check_cancellation_fee", "check_invoice", "check_payment_methods",
    "check_refund_policy", "complaint", "contact_customer_service",
    "contact_human_agent", "create_account", "delete_account", "delivery_options",
    "delivery_period", "edit_account", "get_invoice", "get_refund",
    "newsletter_subscription", "payment_issue", "place_order", "recover_password",
    "registration_problems", "review", "set_up_shipping_address", "switch_account",
    "track_order", "track_refund",
}  # fmt: skip
EXTRA_INTENTS = {
    "greet", "goodbye", "thanks", "affirm", "deny", "bot_challenge", "out_of_scope",
    "request_callback", "cancel_callback", "reschedule_callback", "open_ticket",
    "inform", "email_transcript",
}  # fmt: skip
ENTITIES = {"order_number", "email", "phone", "time"}
REGEX_ENTITIES = {"order_number", "email", "phone"}
ORDER_INTENTS = {"track_order", "cancel_order", "change_order", "get_refund", "track_refund"}

MIN_EXTRA = {intent: 25 for intent in EXTRA_INTENTS}
MIN_EXTRA.update(out_of_scope=60, inform=40)


def _load_script():
    spec = importlib.util.spec_from_file_location("convert_bitext", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("convert_bitext", module)
    spec.loader.exec_module(module)
    return module


convert_bitext = _load_script()
normalise = convert_bitext.normalise


def _load(path: Path):
    from rasa.shared.nlu.training_data.loading import load_data

    return load_data(str(path))


def _by_intent(training_data) -> Dict[str, List[str]]:
    result: Dict[str, List[str]] = defaultdict(list)
    for ex in training_data.training_examples:
        result[ex.get("intent")].append(ex.get("text"))
    return result


@pytest.fixture(scope="module")
def train():
    return _load(TRAIN_FILE)


@pytest.fixture(scope="module")
def holdout():
    return _load(HOLDOUT_FILE)


@pytest.fixture(scope="module")
def extra():
    return _load(EXTRA_FILE)


@pytest.fixture(scope="module")
def nlu_files() -> List[str]:
    """The NLU files `rasa train` picks up from data/nlu (README, LICENSE etc. are
    skipped by Rasa's file discovery, exactly as RasaFileImporter does)."""
    import rasa.shared.data

    return sorted(rasa.shared.data.get_data_files([str(NLU_DIR)], rasa.shared.data.is_nlu_file))


@pytest.fixture(scope="module")
def all_nlu(nlu_files):
    from rasa.shared.nlu.training_data.training_data import TrainingData

    parts = [_load(Path(f)) for f in nlu_files]
    return TrainingData().merge(*parts)


@pytest.fixture(scope="module")
def regexes() -> Dict[str, "re.Pattern[str]"]:
    data = _load(REGEX_FILE)
    return {r["name"]: re.compile(r["pattern"]) for r in data.regex_features}


def _dataset_dir() -> Path:
    path = convert_bitext.resolve_source(None)
    if not (path / convert_bitext.CSV_NAME).is_file():
        pytest.skip(f"Bitext dataset not found at {path} (set BITEXT_DIR)")
    return path


# --------------------------------------------------------------------------
# generated files
# --------------------------------------------------------------------------


def test_convert_bitext_check_passes():
    _dataset_dir()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_conversion_does_not_depend_on_csv_row_order(tmp_path):
    source = _dataset_dir()
    with (source / convert_bitext.CSV_NAME).open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    random.Random(7).shuffle(body)
    with (tmp_path / convert_bitext.CSV_NAME).open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([header] + body)
    for name in ("LICENSE.txt", "README.md"):
        (tmp_path / name).write_bytes((source / name).read_bytes())

    outputs, _ = convert_bitext.build_outputs(tmp_path)
    for rel, content in outputs.items():
        assert (REPO_ROOT / rel).read_bytes() == content, rel


def test_licence_and_provenance_kept_beside_the_data():
    licence = (NLU_DIR / "bitext" / "LICENSE.txt").read_text(encoding="utf-8")
    assert "Community Data License Agreement" in licence
    note = (NLU_DIR / "bitext" / "SOURCE.md").read_text(encoding="utf-8")
    assert "CDLA-Sharing-1.0" in note
    assert "../shared/datasets/bitext-customer-service/" in note
    assert "scripts/convert_bitext.py" in note


def test_holdout_size_rule():
    # 10 %, round half up
    assert [convert_bitext.holdout_size(n) for n in (0, 4, 5, 14, 15, 290, 294, 295, 305, 324)] == [
        0, 0, 1, 1, 2, 29, 29, 30, 31, 32,
    ]  # fmt: skip


# --------------------------------------------------------------------------
# split
# --------------------------------------------------------------------------


def test_all_bitext_intents_in_train_and_holdout(train, holdout):
    assert set(train.intents) == BITEXT_INTENTS
    assert set(holdout.intents) == BITEXT_INTENTS
    assert len(BITEXT_INTENTS) == 27


def test_holdout_is_stratified_ten_percent_round_half_up(train, holdout):
    train_by, hold_by = _by_intent(train), _by_intent(holdout)
    for intent in BITEXT_INTENTS:
        n = len(train_by[intent]) + len(hold_by[intent])
        assert len(hold_by[intent]) == (n + 5) // 10, intent
    assert len(holdout.training_examples) == sum(
        (len(train_by[i]) + len(hold_by[i]) + 5) // 10 for i in BITEXT_INTENTS
    )


def test_holdout_and_training_are_disjoint(holdout, all_nlu):
    held = {normalise(ex.get("text")) for ex in holdout.training_examples}
    trained = {normalise(ex.get("text")) for ex in all_nlu.training_examples}
    assert not held & trained


def test_no_duplicates_within_generated_files(train, holdout):
    for data in (train, holdout):
        keys = [normalise(ex.get("text")) for ex in data.training_examples]
        assert len(keys) == len(set(keys))


def test_generated_text_has_no_annotation_syntax(train, holdout):
    for data in (train, holdout):
        assert not data.entities
        for ex in data.training_examples:
            assert not re.search(r"[\[\]\(\)\{\}]", ex.get("text")), ex.get("text")
            assert ex.get("text") == ex.get("text").strip()


def test_no_holdout_file_under_data():
    assert not list((REPO_ROOT / "data").rglob("*holdout*"))


# --------------------------------------------------------------------------
# full data/nlu as Rasa sees it
# --------------------------------------------------------------------------


def test_rasa_loads_data_nlu(all_nlu, nlu_files):
    assert {Path(f).relative_to(REPO_ROOT).as_posix() for f in nlu_files} == {
        "data/nlu/bitext/nlu.yml",
        "data/nlu/de.yml",
        "data/nlu/extra.yml",
        "data/nlu/fr.yml",
        "data/nlu/paraphrases.yml",
        "data/nlu/regex.yml",
    }
    assert set(all_nlu.intents) == BITEXT_INTENTS | EXTRA_INTENTS
    assert set(all_nlu.entities) == ENTITIES


def test_no_example_under_two_intents(all_nlu):
    seen: Dict[str, Set[str]] = defaultdict(set)
    for ex in all_nlu.training_examples:
        seen[normalise(ex.get("text"))].add(ex.get("intent"))
    clashes = {k: v for k, v in seen.items() if len(v) > 1}
    assert not clashes


def test_extra_intent_sizes(extra):
    counts = Counter(ex.get("intent") for ex in extra.training_examples)
    for intent, minimum in MIN_EXTRA.items():
        assert counts[intent] >= minimum, (intent, counts[intent])


def test_order_intents_have_annotated_order_numbers(extra):
    annotated = Counter(
        ex.get("intent")
        for ex in extra.training_examples
        if any(e["entity"] == "order_number" for e in ex.get("entities") or [])
    )
    for intent in ORDER_INTENTS:
        assert annotated[intent] >= 15, (intent, annotated[intent])


def test_entity_annotation_conventions(all_nlu):
    for ex in all_nlu.training_examples:
        text = ex.get("text")
        for ent in ex.get("entities") or []:
            value = text[ent["start"] : ent["end"]]
            assert value == value.strip() and value, (text, ent)
            if ent["entity"] == "order_number":
                assert re.fullmatch(r"\d{6}", value), (text, ent)
            elif ent["entity"] == "email":
                assert "@" in value, (text, ent)


# --------------------------------------------------------------------------
# regexes
# --------------------------------------------------------------------------


def test_regex_names_are_entity_names(regexes):
    assert set(regexes) == REGEX_ENTITIES
    assert REGEX_ENTITIES <= ENTITIES


def test_regexes_agree_with_annotations(all_nlu, regexes):
    """For every example, each regex matches exactly the annotated spans."""
    problems = []
    for ex in all_nlu.training_examples:
        text = ex.get("text")
        for name, pattern in regexes.items():
            found = {(m.start(), m.end()) for m in pattern.finditer(text)}
            annotated = {
                (e["start"], e["end"])
                for e in ex.get("entities") or []
                if e["entity"] == name
            }
            if found != annotated:
                problems.append((ex.get("intent"), text, name, found, annotated))
    assert not problems, problems[:10]


@pytest.mark.parametrize(
    "text, name, expected",
    [
        ("104233", "order_number", ["104233"]),
        ("cancel #104871 pls", "order_number", ["104871"]),
        ("orders 104233 105020", "order_number", ["104233", "105020"]),
        ("order 104233 2 days ago", "order_number", ["104233"]),
        ("1042331", "order_number", []),
        ("+44 7700 900123", "order_number", []),
        ("0151 234567", "order_number", []),
        ("+44 7700 900123", "phone", ["+44 7700 900123"]),
        ("call +49 151 23456789 pls", "phone", ["+49 151 23456789"]),
        ("0151 23456789", "phone", ["0151 23456789"]),
        ("+44 (0) 7700 900123", "phone", ["+44 (0) 7700 900123"]),
        ("(415) 555-0132", "phone", ["(415) 555-0132"]),
        ("104233", "phone", []),
        ("#104871", "phone", []),
        ("order 104233 2 days ago", "phone", []),
        ("104233 105020", "phone", []),
        ("2024-05-01", "phone", []),
        ("monday 9:30", "phone", []),
        ("anna.k@example.com", "email", ["anna.k@example.com"]),
        ("mail sam.lee+shop@example.co.uk.", "email", ["sam.lee+shop@example.co.uk"]),
        ("anna at example dot com", "email", []),
    ],
)
def test_regex_examples(regexes, text, name, expected):
    assert [m.group() for m in regexes[name].finditer(text)] == expected
