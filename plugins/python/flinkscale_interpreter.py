"""Helpers for writing a flinkscale metric interpreter in Python.

An interpreter turns the application's raw metric series into named
signals (``seconds_behind``, ``lag_growth_per_sec``) that alarms watch and
policies read. componentize-py turns a Python module into a WebAssembly
component of the ``metric-interpreter`` world (``wit/v0.2.0/plugin.wit``,
exporting ``interpreter``); this module is the layer between that world's
generated bindings and an interpreter's author, the Python counterpart of
the Rust SDK's ``Interpreter`` trait. An interpreter subclasses
:class:`InterpreterBase`, names itself, declares its parameters and writes
two methods::

    from flinkscale_interpreter import InterpreterBase, Param, Params, Signal, series

    class Interpreter(InterpreterBase):    # componentize-py looks for `Interpreter`
        NAME = "doubled"
        VERSION = "0.1.0"
        SUMMARY = "Twice the latest value of a metric."
        PARAMETERS = [Param("metric", "metric-id", required=True, meaning="The metric.")]

        def setup(self, params: Params) -> None:
            self.metric = params.get_str("metric")

        def on_interpret(self, now_ms, app, metrics):
            found = series(metrics, self.metric)
            if found is None or not found.points:
                return []
            return [Signal("doubled", 2 * found.points[-1].value)]

The parameter layer (:class:`Param`, :class:`Params`, their checks and
error texts) is ``flinkscale_policy``'s, shared: a parameter reads and is
refused the same way in a policy and in an interpreter, and as in the Rust
SDK, word for word. Errors are plain exceptions: raise
:class:`InterpreterError` with a sentence for the person who wrote the
configuration, and the host receives it as the ``err`` of ``configure`` or
``interpret``; any other exception is reported the same way, with its type,
rather than trapping the instance. An interpret error makes the
evaluation hold without asking the policy, and counts toward the
interpreter's quarantine; with not enough data yet, return an empty list
instead (the signals are then absent, and the policy is asked).

Build with ``plugins/python/build.sh MODULE`` (the script picks the world
from the module: one that imports this helper is an interpreter).
"""

import math
from typing import Any, List, Optional

from componentize_py_types import Err
from flinkscale_policy import (
    NOT_CONFIGURED,
    PARAMETER_KINDS,
    Param,
    Params,
    PolicyError,
    _check_metadata,
    _configured,
    _error_text,
    _kind,
    _metadata,
    _surrogate,
)
from wit_world import exports as _exports
from wit_world.imports.types import (
    Application,
    AppStatus,
    Datapoint,
    PluginMetadata,
    Series,
    Signal,
)

__all__ = [
    "InterpreterError",
    "InterpreterBase",
    "Params",
    "Param",
    "PARAMETER_KINDS",
    "series",
    "configured_metrics",
    "Application",
    "AppStatus",
    "Datapoint",
    "Series",
    "Signal",
]

#: A refusal meant for the person who wrote the configuration; its single
#: argument is the message the host logs. The same class as
#: ``flinkscale_policy.PolicyError``, which the parameter getters raise.
InterpreterError = PolicyError


def series(metrics: List[Series], metric_id: str) -> Optional[Series]:
    """The series of the metric with this id (``[[application.metric]] id``),
    if the application configures it."""
    for candidate in metrics:
        if candidate.id == metric_id:
            return candidate
    return None


def configured_metrics(metrics: List[Series]) -> str:
    """The configured metric ids, comma-separated, or ``none``: for an error
    that names a metric the application does not configure."""
    ids = [candidate.id for candidate in metrics]
    return ", ".join(ids) if ids else "none"


def _checked_signals(answer: Any) -> List[Signal]:
    """The answer of ``on_interpret`` as the contract carries it, or an
    :class:`InterpreterError` saying what is wrong with it: a wrong type
    would otherwise trap the instance while the bindings lower it. The
    texts are ``flinkscale-interpreter.js``'s, word for word, and count
    signals from 1 as the host does."""
    if not isinstance(answer, (list, tuple)):
        raise InterpreterError(
            f"the interpreter returned {_kind(answer)}, not a list of signals (name, value)"
        )
    signals = []
    for index, item in enumerate(answer):
        which = f"signal {index + 1} of {len(answer)}"
        if not isinstance(item, Signal):
            raise InterpreterError(f"{which} is {_kind(item)}, not a signal (name, value)")
        if not isinstance(item.name, str):
            raise InterpreterError(
                f"{which} has a name that is {_kind(item.name)}, not a string"
            )
        # A name is looked up, not read: one written otherwise than it was
        # given would name another signal.
        where = _surrogate(item.name)
        if where is not None:
            raise InterpreterError(
                f"{which} has a name with a lone surrogate ({where}), "
                "which a UTF-8 string cannot carry"
            )
        value = item.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InterpreterError(
                f"{which} (`{item.name}`) has a value that is {_kind(value)}, not a number"
            )
        # An int beyond a double's range would fail to lower; the host
        # drops infinities anyway, as for a float.
        try:
            value = float(value)
        except OverflowError:
            value = math.copysign(math.inf, value)
        signals.append(Signal(item.name, value))
    return signals


class InterpreterBase(_exports.Interpreter):
    """Implements the ``interpreter`` export once; an interpreter sets
    ``NAME``, ``VERSION``, ``SUMMARY`` and ``PARAMETERS`` and overrides
    :meth:`setup` and :meth:`on_interpret`.

    As for a policy (``flinkscale_policy.PolicyBase``): the host documents
    and checks the parameters from ``metadata``; ``configure`` refuses any
    key not declared before :meth:`setup` runs, reads an absent key as its
    declared default, forgets any previous configuration (a failed
    reconfiguration must not leave the old one answering); ``interpret``
    refuses with ``not configured`` until a ``configure`` has succeeded.
    Exceptions become the ``err`` the contract expects.
    """

    #: The plugin's name, for the host's logs and records.
    NAME = "python-interpreter"
    #: The plugin's own version.
    VERSION = "0.0.0"
    #: What the plugin does, in one sentence.
    SUMMARY = "A metric interpreter written in Python."
    #: Every parameter the interpreter accepts, as :class:`Param`
    #: declarations, in the order its documentation lists them.
    PARAMETERS: List[Param] = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _check_metadata(cls)

    def setup(self, params: Params) -> None:
        """Reads and validates the parameters; raise :class:`InterpreterError` to refuse them."""

    def on_interpret(
        self, now_ms: int, app: Application, metrics: List[Series]
    ) -> List[Signal]:
        """The signals for now: a list of ``Signal(name, value)``, empty when
        there is nothing to say (a signal left out is absent, not zero).
        ``metrics`` are the configured series in configuration order, each
        with its datapoints oldest first."""
        raise NotImplementedError("an interpreter must override on_interpret")

    def metadata(self) -> PluginMetadata:
        """The contract's ``metadata``: ``NAME``, ``VERSION``, ``SUMMARY``
        and ``PARAMETERS``."""
        return _metadata(self)

    def configure(self, params_json: str) -> None:
        """The contract's ``configure``; an interpreter writes :meth:`setup` instead."""
        global _ACTIVE
        _ACTIVE = None
        _ACTIVE = _configured(type(self), params_json)

    def interpret(self, now_ms: int, app: Application, metrics: List[Series]) -> List[Signal]:
        """The contract's ``interpret``; an interpreter writes :meth:`on_interpret` instead."""
        if _ACTIVE is None:
            raise Err(NOT_CONFIGURED)
        try:
            return _checked_signals(_ACTIVE.on_interpret(now_ms, app, metrics))
        except Exception as error:
            raise Err(_error_text(error)) from None


# The configured interpreter of this instance. Module state rather than
# `self`: the bindings do not promise to call every export on the same object.
_ACTIVE: Optional[InterpreterBase] = None
