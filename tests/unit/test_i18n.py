"""The customer's language (issue 16): locales, translated messages and their fallback,
domain responses per locale, the action server's language per call, dates and hours."""
from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict
from zoneinfo import ZoneInfo

import pytest
import yaml

from bot.i18n import (
    conversation_locale,
    current_locale,
    locale_of_metadata,
    locale_of_tracker,
    normalise_locale,
    use_locale,
)
from bot.messages import Messages, load_messages, locale_path, notice

ROOT = Path(__file__).resolve().parents[2]
ENGLISH = ROOT / "data" / "messages.yml"
LANGUAGES = ("de", "fr")


@pytest.mark.parametrize(("value", "expected"), [
    ("de-DE", "de"), ("de", "de"), ("DE", "de"), ("de_AT", "de"), ("de-CH-1996", "de"),
    ("fr-FR", "fr"), ("fr_CA", "fr"), (" fr ", "fr"), ("en-GB", "en"), ("en", "en"),
    ("es-ES", "en"), ("it", "en"), ("", "en"), ("  ", "en"), ("de DE", "en"), ("123", "en"),
    ("german", "en"), (None, "en"), (42, "en"), (["de"], "en"), ({"locale": "de"}, "en"),
])
def test_locales_are_normalised_to_the_languages_the_bot_speaks(value: Any, expected: str) -> None:
    assert normalise_locale(value) == expected


def test_the_app_context_wins_over_the_token_and_nothing_says_nothing() -> None:
    assert locale_of_metadata({"customer": {"locale": "de-DE"}}) == "de"
    assert locale_of_metadata({"customer": {"locale": "de-DE"},
                               "context": {"locale": "fr-FR"}}) == "fr"
    assert locale_of_metadata({"customer": {"locale": "de-DE"},
                               "context": {"locale": "  "}}) == "de"
    assert locale_of_metadata({"customer": {"id": "x"}, "context": {"screen": "orders"}}) is None
    assert locale_of_metadata("de") is None
    assert locale_of_metadata({"customer": "de"}) is None


def test_a_trackers_language_is_its_latest_message_else_its_slot() -> None:
    latest = {"metadata": {"customer": {"id": "cust-anna", "locale": "de-DE"}}}
    assert locale_of_tracker({"latest_message": latest, "slots": {"locale": "fr"}}) == "de"
    assert locale_of_tracker({"latest_message": {"metadata": {}}, "slots": {"locale": "fr"}}) == "fr"
    assert locale_of_tracker({"latest_message": None, "slots": None}) == "en"
    sdk = SimpleNamespace(latest_message={"metadata": {"context": {"locale": "fr-BE"}}}, slots={})
    assert locale_of_tracker(sdk) == "fr"


def test_a_stored_conversation_speaks_its_apps_language_else_its_tokens() -> None:
    assert conversation_locale(SimpleNamespace(context={"locale": "fr-FR"},
                                               profile={"locale": "de-DE"})) == "fr"
    assert conversation_locale(SimpleNamespace(context={}, profile={"locale": "de-DE"})) == "de"
    assert conversation_locale(SimpleNamespace(context=None, profile=None)) == "en"
    assert conversation_locale(None) == "en"


# ----------------------------------------------------------- translations


def _raw(path: Path) -> Dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["messages"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_is_translated_with_the_same_placeholders_and_buttons(language: str) -> None:
    english = Messages.load(ENGLISH)
    translated = Messages.load(locale_path(ENGLISH, language))

    missing = sorted(set(english.entries) - set(translated.entries))
    assert missing == [], f"messages.{language}.yml lacks {missing}"
    for key, message in english.entries.items():
        other = translated.entries[key]
        assert other.placeholders == message.placeholders, key
        assert [b["payload"] for b in other.buttons] == [b["payload"] for b in message.buttons], key
    # translated, not copied: only names and numbers may read the same
    same = [k for k, m in english.entries.items() if translated.entries[k].text == m.text]
    assert len(same) <= 6, f"{language}: {same} are the English text"


def test_german_says_sie_and_french_says_vous() -> None:
    german = " ".join(m.text for m in Messages.load(locale_path(ENGLISH, "de")).entries.values())
    french = " ".join(m.text for m in Messages.load(locale_path(ENGLISH, "fr")).entries.values())
    for informal in (" du ", " dich ", " dein", " dir "):
        assert informal not in f" {german.lower()} ", informal
    assert " vous " in french and " tu " not in f" {french.lower()} "


def test_the_language_of_the_turn_picks_the_file() -> None:
    with use_locale("de-DE"):
        assert current_locale() == "de"
        assert notice("widget_session_ended") == "Chat beendet"
    with use_locale("fr"):
        assert notice("widget_session_ended") == "Chat terminé"
    assert current_locale() == "en"
    assert notice("widget_session_ended") == "Chat ended"
    assert notice("widget_session_ended", locale="de") == "Chat beendet"
    assert notice("widget_session_ended", locale="es-ES") == "Chat ended"


def test_a_missing_key_falls_back_to_english_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "messages.yml").write_text(
        'version: 1\nmessages:\n  hello: "Hello {name}"\n  bye: "Goodbye"\n', encoding="utf-8")
    (tmp_path / "messages.de.yml").write_text(
        'version: 1\nmessages:\n  hello: "Hallo {name}"\n  extra: "nicht im Englischen"\n',
        encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="bot.messages"):
        first = load_messages(tmp_path / "messages.yml", locale="de")
        again = load_messages(tmp_path / "messages.yml", locale="de")

    assert first.text("hello", name="Anna") == "Hallo Anna"
    assert first.text("bye") == again.text("bye") == "Goodbye"
    assert "extra" not in first.entries
    missing = [r for r in caplog.records if "no messages.bye" in r.getMessage()]
    assert len(missing) == 1
    assert any("messages.extra is not in messages.yml" in r.getMessage() for r in caplog.records)


def test_a_broken_or_missing_translation_is_english(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "messages.yml").write_text('version: 1\nmessages:\n  bye: "Goodbye"\n',
                                           encoding="utf-8")
    (tmp_path / "messages.fr.yml").write_text("messages: [not, a, mapping\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="bot.messages"):
        assert load_messages(tmp_path / "messages.yml", locale="fr").text("bye") == "Goodbye"
        assert load_messages(tmp_path / "messages.yml", locale="de").text("bye") == "Goodbye"
    assert any("cannot use the translation" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------- domain.yml responses


def test_every_response_has_a_german_and_a_french_variant() -> None:
    domain = yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))
    assert domain["slots"]["locale"]["values"] == ["en", "de", "fr"]
    for name, variants in domain["responses"].items():
        default = [v for v in variants if "condition" not in v]
        assert len(default) == 1, name
        for language in LANGUAGES:
            found = [v for v in variants if v.get("condition") == [
                {"type": "slot", "name": "locale", "value": language}]]
            assert len(found) == 1, (name, language)
            assert found[0]["text"] != default[0]["text"], (name, language)
            assert [b["payload"] for b in found[0].get("buttons") or []] == [
                b["payload"] for b in default[0].get("buttons") or []], (name, language)


# ----------------------------------------------------------- the action server


def _request(body: Any, path: str = "/webhook") -> Any:
    return SimpleNamespace(path=path, method="POST", json=body)


def test_the_action_server_speaks_the_trackers_language() -> None:
    from bot.action_server import speak_the_customers_language

    async def call(body: Any, path: str = "/webhook") -> str:
        await speak_the_customers_language(_request(body, path))
        return current_locale()

    anna = {"tracker": {"latest_message": {"metadata": {"customer": {"locale": "de-DE"}}},
                        "slots": {}}}
    assert asyncio.run(call(anna)) == "de"
    assert asyncio.run(call({"tracker": {"slots": {"locale": "fr"}}})) == "fr"
    assert asyncio.run(call({"tracker": "garbage"})) == "en"
    assert asyncio.run(call(["not", "a", "call"])) == "en"
    assert asyncio.run(call(anna, path="/actions")) == "en"
    assert current_locale() == "en"  # each request is its own task


def test_a_prompt_action_speaks_german_for_a_german_call() -> None:
    from rasa_sdk import Tracker
    from rasa_sdk.executor import CollectingDispatcher

    from actions.prompts import AskRefundReason

    dispatcher = CollectingDispatcher()
    tracker = Tracker("widget:anna", {}, {}, [], False, None, None, "action_listen")
    with use_locale("de"):
        asyncio.run(AskRefundReason().run(dispatcher, tracker, {}))
    assert dispatcher.messages[0]["text"].startswith("Das tut mir leid. Warum möchten Sie")


# ----------------------------------------------------------- times and days


def test_times_days_and_hours_are_said_in_the_customers_language() -> None:
    from bot.business_hours import BusinessHours
    from bot.timeparse import humanize, say_date

    london = ZoneInfo("Europe/London")
    when = datetime(2026, 12, 8, 10, 0, tzinfo=london)
    now = datetime(2026, 12, 7, 9, 0, tzinfo=london)
    assert humanize(when, zone=True, locale="en") == "Tuesday 8 December at 10:00 London time"
    assert humanize(when, zone=True, locale="de") == "Dienstag, 8. Dezember um 10:00 (Ortszeit London)"
    assert humanize(when, zone=True, locale="fr") == "mardi 8 décembre à 10:00 (heure de London)"
    assert humanize(when, now=now, locale="de") == "morgen um 10:00"
    assert humanize(when, now=now, locale="fr") == "demain à 10:00"
    with use_locale("de"):
        assert humanize(when, now=when) == "heute um 10:00"
        assert say_date(date(2026, 12, 1)) == "Dienstag, 1. Dezember"
    assert say_date(date(2026, 12, 1), "fr") == "mardi 1 décembre"
    hours = BusinessHours.parse("mon-fri 09:00-18:00; sat 10:00-14:00", "Europe/Berlin")
    with use_locale("de"):
        assert hours.describe(zone=False) == "Mo–Fr 09:00–18:00, Sa 10:00–14:00"
    with use_locale("fr"):
        assert hours.describe(zone=False) == "lun.–ven. 09:00–18:00, sam. 10:00–14:00"
    assert hours.describe(zone=False) == "Mon–Fri 09:00–18:00, Sat 10:00–14:00"


def test_language_classes_are_summed_into_their_intent() -> None:
    from rasa.shared.nlu.training_data.message import Message

    from bot.nlu.intent_classifier import class_label

    german = Message(data={"text": "wo ist meine bestellung", "intent": "track_order",
                           "metadata": {"intent": {"language": "de"}}})
    english = Message(data={"text": "where is my order", "intent": "track_order"})
    assert class_label(german) == "track_order@de"
    assert class_label(english) == "track_order"
    assert class_label(Message(data={"text": "x", "intent": "greet",
                                     "metadata": {"intent": {"language": "EN"}}})) == "greet"


@pytest.mark.parametrize(("text", "expected"), [
    ("where is my order 104233", set()), ("it's too small", set()), ("ok", set()),
    ("wo ist meine Bestellung", {"de"}), ("Bestellstatus 104250", {"de"}),
    ("rückruf bitte", {"de"}), ("où est ma commande", {"fr"}), ("remboursement svp", {"fr"}),
    ("merci, danke", {"de", "fr"}),
])
def test_the_language_gate_opens_only_for_a_sign_of_the_language(text: str, expected: set) -> None:
    from bot.nlu.language_gate import possible_languages

    assert possible_languages(text) == expected
