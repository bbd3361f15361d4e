"""Rasa's prediction graphs run node after node, without dask's scheduler.

Rasa 3.6 runs the trained model's graphs (the NLU graph on each message, the policy graph
on each prediction, two or three per turn) with ``DaskGraphRunner``: every run builds the
minimal schema for its targets, a dask graph of it, orders it with ``dask.order`` and executes
it through ``dask.local.get_async``'s task queue. For the few nodes of a prediction that
bookkeeping cost about as much as the rule policy itself: in issue 14's profile (50 widget
conversations, one Rasa process) dask was 4-5 % of the process and the graphs' own work 9 %.

:class:`SequentialGraphRunner` is ``DaskGraphRunner`` with its ``run`` replaced: the order
of the nodes a set of targets needs is computed once per set of targets and kept, and each
run calls those nodes in that order with the same arguments dask would pass (each needed
node's ``(name, output)``, an input as ``(name, value)``, a name nothing provides as the bare
name, which ``GraphNode`` reports), returning ``{target: output}`` as Rasa's runner does. The
nodes, their loading and their hooks are Rasa's. Exceptions propagate unchanged, as from
dask's synchronous scheduler (``RuntimeError`` becomes Rasa's ``GraphRunError``). Training is
untouched (``rasa train`` builds its own runner).

:func:`install` (``bot/serve.py``) makes Rasa's ``MessageProcessor`` load models with it.
"""
from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Text, Tuple

from rasa.engine.exceptions import GraphRunError
from rasa.engine.runner.dask import DaskGraphRunner

__all__ = ["SequentialGraphRunner", "install"]

#: Per node of a plan: its name and the names its arguments come from (``needs`` values).
_Steps = List[Tuple[Text, Tuple[Text, ...]]]
#: The steps, and the node names of the targets' minimal schema (dask's graph keys).
_Plan = Tuple[_Steps, frozenset]


class SequentialGraphRunner(DaskGraphRunner):
    """``DaskGraphRunner`` that runs the nodes itself, in a kept order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: Dict[Tuple[Text, ...], _Plan] = {}
        self._plans_lock = threading.Lock()  # the NLU graph runs in a worker thread

    def run(
        self,
        inputs: Optional[Dict[Text, Any]] = None,
        targets: Optional[List[Text]] = None,
    ) -> Dict[Text, Any]:
        """Run the nodes the targets need (see Rasa's ``GraphRunner.run``)."""
        run_targets = list(targets) if targets else list(self._graph_schema.target_names)
        steps, graph_keys = self._plan(tuple(run_targets))
        results: Dict[Text, Any] = {}
        for name, value in (inputs or {}).items():
            if isinstance(value, str) and (value in graph_keys or value in results):
                raise GraphRunError(
                    f"Input value '{value}' clashes with a node name. Make sure "
                    f"that none of the input names passed to the `run` method are the "
                    f"same as node names in the graph schema."
                )
            results[name] = (name, value)
        try:
            for node_name, needs in steps:
                if node_name in results:  # an input given in place of the node, as in dask
                    continue
                arguments = [results.get(need, need) for need in needs]
                results[node_name] = self._instantiated_nodes[node_name](*arguments)
        except RuntimeError as error:
            raise GraphRunError("Error running runner.") from error
        return dict(results[target] for target in run_targets)

    def _plan(self, targets: Tuple[Text, ...]) -> _Plan:
        plan = self._plans.get(targets)
        if plan is None:
            with self._plans_lock:
                plan = self._plans.get(targets)
                if plan is None:
                    plan = self._plans[targets] = _order(self._graph_schema, targets)
        return plan


def _order(schema: Any, targets: Tuple[Text, ...]) -> _Plan:
    """The nodes the targets need, each after the nodes it needs (depth first)."""
    minimal = schema.minimal_graph_schema(list(targets))
    plan: _Steps = []
    done: set = set()

    def visit(name: Text, path: Tuple[Text, ...]) -> None:
        if name in done or name not in minimal.nodes:
            return
        if name in path:
            raise GraphRunError(f"The graph has a cycle through '{name}'.")
        needs = tuple(minimal.nodes[name].needs.values())
        for need in needs:
            visit(need, path + (name,))
        done.add(name)
        plan.append((name, needs))

    for target in targets:
        visit(target, ())
    return plan, frozenset(minimal.nodes)


def install() -> None:
    """Make Rasa's ``MessageProcessor`` load models with :class:`SequentialGraphRunner`."""
    import rasa.core.processor

    rasa.core.processor.DaskGraphRunner = SequentialGraphRunner  # type: ignore[misc]
