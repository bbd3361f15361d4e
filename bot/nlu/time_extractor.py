"""Rasa NLU component that tags call-back times and phone numbers.

Add it to ``config.yml`` after the other extractors::

    pipeline:
      - name: bot.nlu.time_extractor.TimeEntityExtractor
        # optional:
        extract_time: true
        extract_phone: true
        default_phone_region: null   # null -> DEFAULT_PHONE_REGION setting

It emits ``time`` entities whose value is the matched text (resolve it later
with :func:`bot.timeparse.parse_when`, which needs "now" and the customer's
timezone) and ``phone`` entities whose value is the E.164 number. It never
adds an entity that overlaps an entity of the same type found by an earlier
extractor (e.g. DIET).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.shared.nlu.constants import (
    ENTITIES,
    ENTITY_ATTRIBUTE_END,
    ENTITY_ATTRIBUTE_START,
    ENTITY_ATTRIBUTE_TYPE,
    ENTITY_ATTRIBUTE_VALUE,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message

from bot.phone import find_phone, normalize_phone
from bot.settings import get_settings
from bot.timeparse import find_when

TIME_ENTITY = "time"
PHONE_ENTITY = "phone"


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR], is_trainable=False
)
class TimeEntityExtractor(GraphComponent, EntityExtractorMixin):
    """Extracts ``time`` and ``phone`` entities with rules (no training)."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """The component's default config (see parent class for full docstring)."""
        return {
            "extract_time": True,
            "extract_phone": True,
            # None -> the DEFAULT_PHONE_REGION setting
            "default_phone_region": None,
        }

    def __init__(self, config: Dict[Text, Any]) -> None:
        """Creates the extractor.

        Args:
            config: The component configuration (merged with the defaults).
        """
        self._config = {**self.get_default_config(), **config}
        self._phone_region: Optional[str] = self._config["default_phone_region"]

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> TimeEntityExtractor:
        """Creates a new component (see parent class for full docstring)."""
        return cls(config)

    @property
    def phone_region(self) -> str:
        """Region used for phone numbers written without ``+``."""
        if self._phone_region is None:
            self._phone_region = get_settings().default_phone_region
        return self._phone_region

    def process(self, messages: List[Message]) -> List[Message]:
        """Adds ``time``/``phone`` entities to each message.

        Args:
            messages: The messages to annotate.

        Returns:
            The same messages, with any new entities appended to ``entities``.
        """
        for message in messages:
            text = message.get(TEXT)
            if not text:
                continue
            existing: List[Dict[Text, Any]] = message.get(ENTITIES, []) or []
            found = self.add_extractor_name(self._extract(text, existing))
            message.set(ENTITIES, existing + found, add_to_output=True)
        return messages

    def _extract(self, text: str, existing: List[Dict[Text, Any]]) -> List[Dict[Text, Any]]:
        entities: List[Dict[Text, Any]] = []
        if self._config["extract_time"]:
            span = find_when(text)
            if span is not None and not _overlaps(existing, TIME_ENTITY, span):
                entities.append(_entity(TIME_ENTITY, span, text[span[0]:span[1]]))
        if self._config["extract_phone"]:
            span = find_phone(text, self.phone_region)
            if span is not None and not _overlaps(existing, PHONE_ENTITY, span):
                number = normalize_phone(text[span[0]:span[1]], self.phone_region)
                if number is not None:
                    entities.append(_entity(PHONE_ENTITY, span, number))
        return entities


def _entity(entity_type: str, span: tuple[int, int], value: str) -> Dict[Text, Any]:
    return {
        ENTITY_ATTRIBUTE_TYPE: entity_type,
        ENTITY_ATTRIBUTE_START: span[0],
        ENTITY_ATTRIBUTE_END: span[1],
        ENTITY_ATTRIBUTE_VALUE: value,
    }


def _overlaps(entities: List[Dict[Text, Any]], entity_type: str, span: tuple[int, int]) -> bool:
    start, end = span
    for entity in entities:
        if entity.get(ENTITY_ATTRIBUTE_TYPE) != entity_type:
            continue
        other_start = entity.get(ENTITY_ATTRIBUTE_START)
        other_end = entity.get(ENTITY_ATTRIBUTE_END)
        if other_start is None or other_end is None:
            return True  # position unknown: assume it is the same entity
        if other_start < end and start < other_end:
            return True
    return False
