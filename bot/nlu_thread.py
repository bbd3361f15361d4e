"""Rasa's NLU runs in one worker thread instead of on the event loop.

Rasa 3.6's ``MessageProcessor.parse_message`` is a coroutine that runs the NLU graph
(tokenizer, featurizers, our MiniLM encoder, the classifier, the extractors) synchronously,
so the event loop of the Rasa process serves nobody while a message is classified. The
encoder's ONNX Runtime session and the classifier's NumPy work release the GIL, which is
wasted on the loop: in issue 14's profile (50 widget conversations, one process) the NLU
graph was 17 % of the main thread, ONNX Runtime alone 11 %.

:func:`install` makes ``parse_message`` hand the graph to a single worker thread and await
it. One thread keeps the NLU serial, as before (the components are not written for two
messages at once; the policies, which run on the loop, share no graph node with the NLU).
Everything around the graph call stays Rasa's: the HTTP interpreter when one is
configured, the retrieval-intent update, the log line and the unseen-features check.
``bot.multi_request``'s wrapper of the graph call runs in that thread too.
"""
from __future__ import annotations

import asyncio
import copy
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Optional

__all__ = ["install"]

_installed: Dict[str, Any] = {}


def _executor() -> ThreadPoolExecutor:
    executor = _installed.get("executor")
    if executor is None:
        executor = _installed["executor"] = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="nlu")
    return executor


def install() -> None:
    """Replace ``MessageProcessor.parse_message`` with the threaded one (idempotent)."""
    from rasa.core.processor import MessageProcessor, structlogger
    from rasa.shared.core.trackers import DialogueStateTracker

    if "original" in _installed:
        return

    async def parse_message(
        self: Any, message: Any, tracker: Optional[Any] = None,
        only_output_properties: bool = True,
    ) -> Dict[str, Any]:
        """:meth:`rasa.core.processor.MessageProcessor.parse_message`, graph in a thread."""
        if self.http_interpreter:
            parse_data = await self.http_interpreter.parse(message)
        else:
            if tracker is None:
                tracker = DialogueStateTracker.from_events(message.sender_id, [])
            parse_data = await asyncio.get_running_loop().run_in_executor(
                _executor(), functools.partial(
                    self._parse_message_with_graph, message, tracker, only_output_properties))
        self._update_full_retrieval_intent(parse_data)
        structlogger.debug(
            "processor.message.parse",
            parse_data_text=copy.deepcopy(parse_data["text"]),
            parse_data_intent=parse_data["intent"],
            parse_data_entities=copy.deepcopy(parse_data["entities"]),
        )
        self._check_for_unseen_features(parse_data)
        return parse_data

    _installed["original"] = MessageProcessor.parse_message
    MessageProcessor.parse_message = parse_message
