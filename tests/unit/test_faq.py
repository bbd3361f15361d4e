"""Tests for bot.faq: the real FAQ content, validation and search."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest

from bot.faq import (
    MAX_SNIPPET_CHARS,
    MAX_SUMMARY_CHARS,
    Article,
    FaqError,
    FaqIndex,
    SearchHit,
    load_default_index,
)
from bot.settings import PROJECT_ROOT, reset_settings_cache

FAQ_DIR = PROJECT_ROOT / "data" / "faq"

INTENT_TO_ARTICLE = {
    "check_refund_policy": "refund-policy",
    "delivery_options": "delivery-options",
    "delivery_period": "delivery-times",
    "check_payment_methods": "payment-methods",
    "check_cancellation_fee": "cancellation-fees",
    "check_invoice": "invoices",
    "get_invoice": "invoices",
    "create_account": "create-account",
    "edit_account": "edit-account",
    "delete_account": "delete-account",
    "switch_account": "switch-account",
    "recover_password": "password-help",
    "registration_problems": "registration-problems",
    "newsletter_subscription": "newsletter",
    "place_order": "placing-an-order",
    "set_up_shipping_address": "shipping-addresses",
    "change_shipping_address": "shipping-addresses",
    "contact_customer_service": "contact-us",
    "review": "reviews-and-feedback",
    "payment_issue": "payment-problems",
}
SEARCH_ONLY_ARTICLES = ("returns", "order-tracking-help")
BUTTON_PAYLOADS = {
    "/track_order",
    "/cancel_order",
    "/change_order",
    "/get_refund",
    "/track_refund",
    "/request_callback",
    "/open_ticket",
    "/contact_human_agent",
}


@pytest.fixture(scope="module")
def index() -> FaqIndex:
    return FaqIndex.load(FAQ_DIR)


def write_article(
    directory: Path,
    file_name: str,
    *,
    article_id: str = "refunds",
    intents: str = "[check_refund_policy]",
    omit: str = "",
    summary: str = "You get your money back within 14 days.",
) -> Path:
    """Write a small valid article, optionally without one field."""
    fields = {
        "id": article_id,
        "title": "Refunds",
        "intents": intents,
        "keywords": "[refund, money back]",
        "summary": summary,
    }
    front_matter = "".join(f"{key}: {value}\n" for key, value in fields.items() if key != omit)
    path = directory / file_name
    path.write_text(f"---\n{front_matter}---\n# Refunds\n\nRefunds take 3 business days.\n", encoding="utf-8")
    return path


# --- real content ---------------------------------------------------------------


def test_real_articles_load_with_ids_matching_file_names(index: FaqIndex) -> None:
    files = sorted(path.stem for path in FAQ_DIR.glob("*.md") if path.name != "README.md")
    assert sorted(article.id for article in index.articles) == files
    expected = set(INTENT_TO_ARTICLE.values()) | set(SEARCH_ONLY_ARTICLES)
    assert expected <= set(files)


@pytest.mark.parametrize("intent, article_id", sorted(INTENT_TO_ARTICLE.items()))
def test_intent_resolves_to_its_article(index: FaqIndex, intent: str, article_id: str) -> None:
    article = index.for_intent(intent)
    assert article is not None
    assert article.id == article_id
    assert intent in article.intents


@pytest.mark.parametrize("article_id", SEARCH_ONLY_ARTICLES)
def test_search_only_articles_have_no_intents(index: FaqIndex, article_id: str) -> None:
    article = index.get(article_id)
    assert article is not None
    assert article.intents == ()


def test_only_dataset_intents_are_mapped(index: FaqIndex) -> None:
    mapped = {intent for article in index.articles for intent in article.intents}
    assert mapped == set(INTENT_TO_ARTICLE)
    assert index.for_intent("greet") is None
    assert index.get("no-such-article") is None


def test_real_articles_are_well_formed(index: FaqIndex) -> None:
    for article in index.articles:
        assert isinstance(article, Article)
        assert 0 < len(article.summary) <= MAX_SUMMARY_CHARS, article.id
        assert "**" not in article.summary and "\n" not in article.summary, article.id
        assert article.body.startswith(f"# {article.title}\n"), article.id
        assert article.keywords, article.id
        for button in article.buttons:
            assert button["payload"] in BUTTON_PAYLOADS, article.id
            assert button["title"], article.id


def test_refund_policy_article_content(index: FaqIndex) -> None:
    article = index.for_intent("check_refund_policy")
    assert article is not None
    assert article.title == "Refund policy"
    assert {"title": "Request a refund", "payload": "/get_refund"} in article.buttons
    assert "30 days" in article.summary


def test_articles_are_hashable(index: FaqIndex) -> None:
    assert len(set(index.articles)) == len(index.articles)


def test_article_body_as_blocks_and_plain_text(index: FaqIndex) -> None:
    """What the widget draws (blocks) and what plain-text clients show (body_text)."""
    for article in index.articles:
        title = {"type": "heading", "level": 1, "content": [{"type": "text", "text": article.title}]}
        assert article.blocks[0] == title, article.id  # the article view shows it once
        assert article.blocks is article.blocks  # rendered once
    fees = index.get("cancellation-fees")
    assert fees is not None
    table = next(block for block in fees.blocks if block["type"] == "table")
    assert [cell[0]["text"] for cell in table["header"]] == ["Situation", "Can I cancel?", "Cost"]
    assert fees.body_text.startswith("Cancellation fees\n\nOverview\n\nSituation | Can I cancel? | Cost\n")
    tracking = index.get("order-tracking-help")
    assert tracking is not None
    links = [span for block in tracking.blocks if block["type"] == "paragraph"
             for span in block["content"] if span["type"] == "link"]
    assert [link["href"] for link in links] == [
        "https://www.dhl.de/en/privatkunden.html", "https://www.dpd.com/", "https://www.ups.com/track"]


async def test_current_index_renders_the_articles_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_caches: None
) -> None:
    import threading

    import bot.faq as faq

    threads: list = []
    render = faq.markdown_to_blocks

    def recording(markdown: str) -> list:
        threads.append(threading.current_thread())
        return render(markdown)

    monkeypatch.setattr(faq, "markdown_to_blocks", recording)
    write_article(tmp_path, "refunds.md")
    monkeypatch.setenv("FAQ_DIR", str(tmp_path))
    reset_settings_cache()
    faq._CURRENT.clear()
    try:
        index = await faq.current_index()
        article = index.get("refunds")
        assert article is not None
        assert threads and threading.main_thread() not in threads  # rendered in a worker
        assert article.body_text == "Refunds\n\nRefunds take 3 business days."
        assert len(threads) == 1  # and kept
    finally:
        faq._CURRENT.clear()


# --- search ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, article_id",
    [
        ("how long does shipping take to austria", "delivery-times"),
        ("can i pay with paypal", "payment-methods"),
        ("forgot my pasword", "password-help"),
        ("refu", "refund-policy"),
        ("unsubscribe from emails", "newsletter"),
        ("how much does express delivery cost", "delivery-options"),
        ("my card was charged twice", "payment-problems"),
        ("invoice with VAT ID", "invoices"),
        ("is there a fee to cancel my order", "cancellation-fees"),
        ("how do i send back a dress in the wrong size", "returns"),
        ("how do i log out and use another account", "switch-account"),
        ("delete my acount", "delete-account"),
        ("talk to a human", "contact-us"),
        ("reciept", "invoices"),
    ],
)
def test_search_top_hit(index: FaqIndex, query: str, article_id: str) -> None:
    hits = index.search(query)
    assert hits, query
    assert hits[0].article.id == article_id


def test_search_hits_are_ranked_positive_and_have_snippets(index: FaqIndex) -> None:
    hits = index.search("how long does shipping take to austria", limit=10)
    assert 1 < len(hits) <= 10
    assert all(isinstance(hit, SearchHit) and hit.score > 0 for hit in hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    for hit in hits:
        assert 0 < len(hit.snippet) <= MAX_SNIPPET_CHARS
    assert "Austria" in hits[0].snippet
    assert "**" not in hits[0].snippet


def test_search_snippet_is_best_matching_body_sentence(index: FaqIndex) -> None:
    hit = index.search("can i pay with paypal")[0]
    assert "PayPal" in hit.snippet
    long_hit = index.search("delivered but not received neighbours safe place")[0]
    assert long_hit.article.id == "order-tracking-help"
    assert long_hit.snippet.startswith("Check with your neighbours")


def test_search_respects_limit(index: FaqIndex) -> None:
    assert len(index.search("order", limit=2)) == 2
    assert index.search("order", limit=0) == []


@pytest.mark.parametrize("query", ["", "   ", "\n\t", "the and of how", "?!"])
def test_empty_or_meaningless_query_returns_nothing(index: FaqIndex, query: str) -> None:
    assert index.search(query) == []


def test_unknown_words_return_nothing(index: FaqIndex) -> None:
    assert index.search("zzzzqqq") == []


def test_query_is_capped_at_500_characters(index: FaqIndex) -> None:
    assert index.search("refund " + "x" * 493)
    assert index.search("x" * 500 + " refund") == []


def test_typos_only_tolerated_for_longer_tokens(index: FaqIndex) -> None:
    # "klrna" is one edit away from "klarna"
    assert index.search("klrna pay")[0].article.id in {"payment-methods", "payment-problems"}
    # tokens shorter than 5 characters are not corrected ("fea" is no term, "fee" is)
    assert index.search("fea xyz") == []


# --- validation -----------------------------------------------------------------


def test_load_valid_tmp_directory_skips_readme(tmp_path: Path) -> None:
    write_article(tmp_path, "refunds.md")
    (tmp_path / "README.md").write_text("# Not an article\n", encoding="utf-8")
    loaded = FaqIndex.load(tmp_path)
    assert [article.id for article in loaded.articles] == ["refunds"]
    article = loaded.for_intent("check_refund_policy")
    assert article is not None
    assert article.body == "# Refunds\n\nRefunds take 3 business days."
    assert article.buttons == ()
    assert article.keywords == ("refund", "money back")


def test_missing_field_is_rejected(tmp_path: Path) -> None:
    write_article(tmp_path, "refunds.md", omit="summary")
    with pytest.raises(FaqError) as excinfo:
        FaqIndex.load(tmp_path)
    assert str(excinfo.value) == "refunds.md: missing required field 'summary'"


def test_duplicate_id_is_rejected(tmp_path: Path) -> None:
    write_article(tmp_path, "a.md", article_id="refunds", intents="[check_refund_policy]")
    write_article(tmp_path, "b.md", article_id="refunds", intents="[get_refund]")
    with pytest.raises(FaqError) as excinfo:
        FaqIndex.load(tmp_path)
    assert str(excinfo.value) == "b.md: duplicate id 'refunds' (already used by a.md)"


def test_duplicate_intent_is_rejected(tmp_path: Path) -> None:
    write_article(tmp_path, "a.md", article_id="refunds")
    write_article(tmp_path, "b.md", article_id="money-back")
    with pytest.raises(FaqError) as excinfo:
        FaqIndex.load(tmp_path)
    assert str(excinfo.value) == (
        "b.md: intent 'check_refund_policy' is already mapped to article 'refunds' (a.md)"
    )


def test_summary_too_long_is_rejected(tmp_path: Path) -> None:
    write_article(tmp_path, "refunds.md", summary="word " * 70)
    with pytest.raises(FaqError) as excinfo:
        FaqIndex.load(tmp_path)
    assert str(excinfo.value) == "refunds.md: summary is 349 characters long (maximum 320)"


@pytest.mark.parametrize(
    "content, message",
    [
        ("# No front matter\n", "missing YAML front matter (the file must start with a '---' line)"),
        ("---\nid: x\n# never closed\n", "front matter is not closed with a '---' line"),
        ("---\n- a\n- b\n---\nBody.\n", "front matter must be a mapping of fields"),
        (
            "---\nid: x\ntitle: X\nintents: []\nkeywords: []\nsummary: S.\nkeyword: [y]\n---\nBody.\n",
            "unknown field 'keyword'",
        ),
        (
            "---\nid: x\ntitle: X\nintents: []\nkeywords: []\nsummary: S.\n---\n\n",
            "article body is empty",
        ),
        (
            "---\nid: x\ntitle: X\nintents: greet\nkeywords: []\nsummary: S.\n---\nBody.\n",
            "field 'intents' must be a list of non-empty strings",
        ),
        (
            "---\nid: Bad Id\ntitle: X\nintents: []\nkeywords: []\nsummary: S.\n---\nBody.\n",
            "id 'Bad Id' must contain only lowercase letters, digits and hyphens",
        ),
        (
            "---\nid: x\ntitle: X\nintents: []\nkeywords: []\nsummary: S.\n"
            "buttons:\n  - title: Go\n    payload: track_order\n---\nBody.\n",
            "button 1 payload must start with '/', got 'track_order'",
        ),
    ],
)
def test_malformed_article_is_rejected(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "x.md").write_text(content, encoding="utf-8")
    with pytest.raises(FaqError) as excinfo:
        FaqIndex.load(tmp_path)
    assert str(excinfo.value) == f"x.md: {message}"


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "x.md").write_text("---\nid: x\ntitle: [unclosed\n---\nBody.\n", encoding="utf-8")
    with pytest.raises(FaqError, match=r"^x\.md: invalid YAML in front matter at line \d+: "):
        FaqIndex.load(tmp_path)


def test_missing_or_empty_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FaqError, match=re.escape(f"FAQ directory not found: {tmp_path / 'nope'}")):
        FaqIndex.load(tmp_path / "nope")
    (tmp_path / "README.md").write_text("# Only a readme\n", encoding="utf-8")
    with pytest.raises(FaqError, match=re.escape(f"no FAQ articles (*.md) found in {tmp_path}")):
        FaqIndex.load(tmp_path)


def test_faq_error_is_a_value_error() -> None:
    assert issubclass(FaqError, ValueError)


# --- default index ----------------------------------------------------------------


@pytest.fixture
def clean_caches() -> Iterator[None]:
    reset_settings_cache()
    load_default_index.cache_clear()
    yield
    reset_settings_cache()
    load_default_index.cache_clear()


def test_default_index_reads_settings_dir_and_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_caches: None
) -> None:
    write_article(tmp_path, "refunds.md")
    monkeypatch.setenv("FAQ_DIR", str(tmp_path))
    first = load_default_index()
    assert [article.id for article in first.articles] == ["refunds"]
    assert load_default_index() is first


def test_default_index_uses_real_content(monkeypatch: pytest.MonkeyPatch, clean_caches: None) -> None:
    monkeypatch.delenv("FAQ_DIR", raising=False)
    monkeypatch.delenv("SUPPORT_DATA_DIR", raising=False)
    assert load_default_index().for_intent("delivery_period") is not None


# --- answers_when (issue 12: "how do I send something back" gets the how-to) --------


@pytest.mark.parametrize(
    ("text", "article"),
    [
        ("how do I send something back?", "returns"),
        ("can i return an item", "returns"),
        ("whats your return policy", "refund-policy"),
        ("how long does a refund take", "refund-policy"),
        ("", "refund-policy"),
    ],
)
def test_answers_when_phrases_pick_the_article_for_an_intent(
    index: FaqIndex, text: str, article: str
) -> None:
    assert index.for_intent("check_refund_policy", text).id == article


def test_answers_when_must_map_intents_to_phrases(tmp_path: Path) -> None:
    path = write_article(tmp_path, "refunds.md")
    path.write_text(path.read_text().replace("summary:", "answers_when: [oops]\nsummary:", 1))
    with pytest.raises(FaqError, match="answers_when' must map intents to lists of phrases"):
        FaqIndex.load(tmp_path)
