"""Helpers for writing a flinkscale scaling policy in Python.

componentize-py turns a Python module into a WebAssembly component of the
``scaling-policy`` world (``wit/v0.2.0/plugin.wit``); this module is the
small layer between that world's generated bindings and a policy author, the
Python counterpart of the Rust SDK (``plugins/sdk``). A policy subclasses
:class:`PolicyBase`, names itself, and writes two methods::

    from flinkscale_policy import PolicyBase, Param, Params, hold, scale_to

    class Policy(PolicyBase):          # componentize-py looks for `Policy`
        NAME = "my-policy"
        VERSION = "0.1.0"
        SUMMARY = "Holds; a start for a policy of your own."
        PARAMETERS = [                 # a key not declared here is refused
            Param("threshold", "number", default=80.0,
                  meaning="The CPU percentage above which to scale out."),
        ]

        def setup(self, params: Params) -> None:
            self.threshold = params.get_f64("threshold")   # 80 when absent

        def on_decide(self, evaluation):
            return hold("nothing to do")

Errors are plain exceptions: raise :class:`PolicyError` (or let a helper
raise it) with a sentence for the person who wrote the configuration, and
the host receives it as the ``err`` of ``configure`` or ``decide``. Any other
exception escaping a policy is reported the same way, with its type, rather
than trapping the instance: the host then holds, exactly as for a returned
error.

Error texts are those of the Rust SDK, word for word, so that a policy
ported from Rust reports the same configuration errors.

A string crosses to the host as UTF-8, which cannot carry a surrogate
(``"\\ud800"``, half of a UTF-16 pair, which Python strings may hold):
the bindings would trap lowering it. So a reason or an error text is
handed over with each surrogate written as its escape, the six
characters ``\\ud800``, and the decision goes through. In the metadata
(``NAME``, ``VERSION``, ``SUMMARY``, a parameter's name, meaning and
default), the author's own constants, a surrogate is refused when the class
is defined, which is at build time, in the JavaScript helper's words.
"""

import json
import math
import os
import traceback
from typing import Any, Iterable, List, Optional

from wit_world import exports as _exports
from componentize_py_types import Err
from wit_world.imports.types import (
    Action_Hold,
    Action_ScaleTo,
    Alarm,
    AlarmState,
    AppStatus,
    Decision,
    Evaluation,
    Parameter as _WitParameter,
    ParameterKind as _WitParameterKind,
    PluginMetadata,
    Series,
)

__all__ = [
    "U32_MAX",
    "PolicyError",
    "Params",
    "Param",
    "PARAMETER_KINDS",
    "PolicyBase",
    "hold",
    "scale_to",
    "alarm",
    "require_alarm",
    "alarm_state_name",
    "app_status_name",
    "metric",
    "signal",
    "AlarmState",
    "AppStatus",
    "Evaluation",
    "Decision",
]

#: The largest KPU (and any other `u32`) the contract can carry.
U32_MAX = 4_294_967_295

#: What `decide` answers before a successful `configure`.
NOT_CONFIGURED = "not configured"


class PolicyError(Exception):
    """A refusal meant for the person who wrote the configuration.

    Its single argument is the message the host logs; it should name the
    parameter or alarm at fault and what would be valid.
    """


# --- decisions -------------------------------------------------------------


# The texts of a KPU and a next evaluation the contract cannot carry;
# `flinkscale-policy.js`'s, word for word, naming them as the contract does.
_KPU = "scale-to needs a whole number of KPU"
_NEXT_EVALUATION = "next-evaluation-secs needs a whole number of seconds"


def _checked_u32(what: str, value: Any) -> int:
    """``value`` if it is a whole number in 0..=U32_MAX (a ``u32`` of the
    contract), else a :class:`PolicyError` saying ``what`` and what was
    found: an opaque trap while lowering the value into the component
    otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U32_MAX:
        raise PolicyError(f"{what} from 0 to {U32_MAX}, found {_describe(value)}")
    return value


def _checked_next(next_evaluation_secs: Any) -> Optional[int]:
    if next_evaluation_secs is None:
        return None
    return _checked_u32(_NEXT_EVALUATION, next_evaluation_secs)


def hold(reason: str, next_evaluation_secs: Optional[int] = None) -> Decision:
    """Keep the current capacity, for this reason.

    ``next_evaluation_secs`` asks to be evaluated again that many seconds
    from now instead of at the application's regular interval: a way to
    skip polls, never to be asked sooner. The host honours it only after a
    hold, with lazy polling on (the default), rounded down to whole
    evaluation intervals and kept within 1 to 15 of them; a scale
    decision's is ignored. One outside 0..=U32_MAX is a
    :class:`PolicyError` here.
    """
    return Decision(Action_Hold(), reason, _checked_next(next_evaluation_secs))


def scale_to(kpu: int, reason: str, next_evaluation_secs: Optional[int] = None) -> Decision:
    """Set the capacity to ``kpu`` KPU, for this reason.

    The host clamps the target to [min_kpu, max_kpu]; 0 (like an empty
    reason) it refuses as a failed call, which counts toward quarantine as
    an error does, so ask for at least 1. A ``kpu`` outside 0..=U32_MAX is
    a :class:`PolicyError` here rather than an opaque failure while
    lowering the value into the component.
    """
    return Decision(
        Action_ScaleTo(_checked_u32(_KPU, kpu)), reason, _checked_next(next_evaluation_secs)
    )


def _kind(value: Any) -> str:
    """What ``value`` is, in the words ``flinkscale-policy.js`` uses for the
    same mistake (``nothing``, ``a string``, ``a list``), so that an author
    reads the same error in either language; also
    ``flinkscale_interpreter.py``'s, for the answers of an interpreter."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _checked_decision(answer: Any) -> Decision:
    """The answer of ``on_decide`` if the contract can carry it, else a
    :class:`PolicyError` saying what is wrong with it: a decision built by
    hand (``Decision(...)``) or anything else would otherwise trap the
    instance while the bindings lower it. The texts are
    ``flinkscale-policy.js``'s, word for word."""
    if not isinstance(answer, Decision):
        raise PolicyError(
            f"the policy returned {_kind(answer)}, not a decision (hold or scale-to)"
        )
    action = answer.action
    if isinstance(action, Action_ScaleTo):
        _checked_u32(_KPU, action.value)
    elif not isinstance(action, Action_Hold):
        raise PolicyError(f"the decision's action is {_kind(action)}, not hold or scale-to")
    if not isinstance(answer.reason, str):
        raise PolicyError(f"the decision's reason is {_kind(answer.reason)}, not a string")
    _checked_next(answer.next_evaluation_secs)
    reason = _carried(answer.reason)
    if reason is not answer.reason:
        answer = Decision(answer.action, reason, answer.next_evaluation_secs)
    return answer


def _surrogate(text: str) -> Optional[str]:
    """The first surrogate of ``text`` and where it is, ``\\ud800 at
    character 12`` (counting code points from 1), or ``None`` when UTF-8
    carries it all. The words are ``flinkscale-policy.js``'s (whose
    surrogates are the lone ones: a pair is one character there)."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as error:
        return f"\\u{ord(text[error.start]):04x} at character {error.start + 1}"


def _carried(text: str) -> str:
    """``text`` itself when UTF-8 carries it, else ``text`` with each
    surrogate written as its escape (``\\ud800``), which it carries."""
    if _surrogate(text) is None:
        return text
    return "".join(
        f"\\u{ord(c):04x}" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text
    )


# --- the evaluation --------------------------------------------------------

_ALARM_STATE_NAMES = {
    AlarmState.OK: "OK",
    AlarmState.ALARM: "ALARM",
    AlarmState.INSUFFICIENT_DATA: "INSUFFICIENT_DATA",
}


def alarm_state_name(state: AlarmState) -> str:
    """The state as CloudWatch spells it: ``OK``, ``ALARM`` or ``INSUFFICIENT_DATA``."""
    return _ALARM_STATE_NAMES[state]


def app_status_name(status: AppStatus) -> str:
    """The status as the service spells it, e.g. ``RUNNING``."""
    return status.name


def _list_or_none(items: Iterable[str]) -> str:
    items = list(items)
    return ", ".join(items) if items else "none"


def alarm(evaluation: Evaluation, alarm_id: str) -> Optional[Alarm]:
    """The alarm with this id (``[[application.alarm]] id``), if configured."""
    for candidate in evaluation.alarms:
        if candidate.name == alarm_id:
            return candidate
    return None


def require_alarm(evaluation: Evaluation, alarm_id: str) -> Alarm:
    """The alarm with this id, or a :class:`PolicyError` naming it and the
    alarms that do exist."""
    found = alarm(evaluation, alarm_id)
    if found is None:
        configured = _list_or_none(a.name for a in evaluation.alarms)
        raise PolicyError(
            f"no alarm `{alarm_id}` is configured for application "
            f"`{evaluation.app.name}` (configured: {configured})"
        )
    return found


def metric(evaluation: Evaluation, metric_id: str) -> Optional[Series]:
    """The series of the metric with this id (``[[application.metric]] id``), if configured."""
    for series in evaluation.metrics:
        if series.id == metric_id:
            return series
    return None


def signal(evaluation: Evaluation, name: str) -> Optional[float]:
    """The value of the interpreter signal with this name, if any interpreter produced it."""
    for candidate in evaluation.signals:
        if candidate.name == name:
            return candidate.value
    return None


# --- parameters ------------------------------------------------------------

_WHOLE_NUMBER = f"a whole number from 0 to {U32_MAX}"


def _describe(value: Any) -> str:
    """A JSON value as a configuration author would recognise it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"the number {json.dumps(value)}"
    if isinstance(value, str):
        return f"the string {json.dumps(value, ensure_ascii=False)}"
    if isinstance(value, list):
        return "an array"
    return "a table"


def _missing(key: str, expected: str) -> PolicyError:
    return PolicyError(f"missing required parameter `{key}` ({expected})")


def _wrong_type(key: str, expected: str, found: Any) -> PolicyError:
    return PolicyError(f"parameter `{key}` must be {expected}, found {_describe(found)}")


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a):
        current = [i + 1] * (len(b) + 1)
        for j, cb in enumerate(b):
            current[j + 1] = min(previous[j] + (ca != cb), previous[j + 1] + 1, current[j] + 1)
        previous = current
    return previous[len(b)]


def _closest(key: str, known: List[str]) -> Optional[str]:
    best = None
    for candidate in known:
        distance = _edit_distance(key, candidate)
        # A third of the name, but at least 2 so that a swapped pair of
        # letters in a short name still counts as a typo.
        if distance <= max(len(candidate) // 3, 2) and distance < len(candidate):
            if best is None or distance < best[0]:
                best = (distance, candidate)
    return None if best is None else best[1]


# --- declared parameters -----------------------------------------------------

#: The contract's ``parameter-kind``s, as a declaration names them.
PARAMETER_KINDS = (
    "boolean",
    "integer",
    "number",
    "text",
    "text-list",
    "alarm-id",
    "alarm-ids",
    "metric-id",
    "metric-ids",
    "table",
)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


# Whether a default fits a kind; a default of the wrong type would be a
# documented value the policy itself refuses.
_FITS_KIND = {
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: _is_number(v) and float(v).is_integer() and 0 <= v <= U32_MAX,
    "number": lambda v: _is_number(v) and math.isfinite(v),
    "text": lambda v: isinstance(v, str),
    "text-list": _is_text_list,
    "alarm-id": lambda v: isinstance(v, str),
    "alarm-ids": _is_text_list,
    "metric-id": lambda v: isinstance(v, str),
    "metric-ids": _is_text_list,
    "table": lambda v: isinstance(v, dict),
}

_NO_DEFAULT = object()


class Param:
    """One parameter a policy accepts, declared in its ``PARAMETERS``.

    ``kind`` is one of :data:`PARAMETER_KINDS`; ``default`` is the value
    (not its JSON text) used when the key is absent, left out when the key
    is required or its default depends on other parameters. A mistake here
    is the policy author's and raises ``ValueError`` when the policy class
    is defined, which is at build time: the build fails with the message.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        *,
        meaning: str,
        required: bool = False,
        default: Any = _NO_DEFAULT,
    ):
        if not isinstance(name, str) or not name:
            raise ValueError("a parameter needs a `name`, a non-empty string")
        if kind not in PARAMETER_KINDS:
            raise ValueError(
                f"parameter `{name}` has kind {kind!r}; valid kinds: {', '.join(PARAMETER_KINDS)}"
            )
        if not isinstance(required, bool):
            raise ValueError(f"parameter `{name}`: `required` must be True or False")
        _carried_whole("a parameter's name", name)
        if not isinstance(meaning, str) or not meaning.strip():
            raise ValueError(f"parameter `{name}` needs a `meaning`, a sentence for people")
        _carried_whole(f"parameter `{name}`'s meaning", meaning)
        if default is not _NO_DEFAULT:
            if required:
                raise ValueError(f"parameter `{name}` is required, so it cannot have a default")
            if not _FITS_KIND[kind](default):
                raise ValueError(
                    f"parameter `{name}` of kind {kind} has a default that is {_describe(default)}"
                )
        self.name = name
        self.kind = kind
        self.required = required
        self.meaning = meaning
        self.default = default
        if self.has_default:
            _carried_whole(f"parameter `{name}`'s default", self.default_json)

    @property
    def has_default(self) -> bool:
        """Whether an absent key reads as a default."""
        return self.default is not _NO_DEFAULT

    @property
    def default_json(self) -> Optional[str]:
        """The default as the contract carries it: JSON text, or ``None``."""
        if not self.has_default:
            return None
        return json.dumps(self.default, ensure_ascii=False, separators=(",", ":"))


def _carried_whole(what: str, text: str) -> None:
    """Refuses ``text``, a part of a plugin's metadata, when UTF-8 cannot
    carry it: metadata is the author's own constant, which the build runs,
    so the build fails with this message rather than the component trapping
    each time the host loads it."""
    where = _surrogate(text)
    if where is not None:
        raise ValueError(
            f"{what} has a lone surrogate ({where}), which a UTF-8 string cannot carry"
        )


def _check_metadata(cls) -> None:
    """Checks a policy or interpreter class's ``NAME``, ``VERSION``,
    ``SUMMARY`` and ``PARAMETERS`` when the class is defined (at build
    time); shared by :class:`PolicyBase` and ``InterpreterBase``."""
    for field in ("NAME", "VERSION", "SUMMARY"):
        value = getattr(cls, field)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{cls.__name__}.{field} must be a non-empty string")
        _carried_whole(f"{cls.__name__}.{field}", value)
    _check_declarations(cls.__name__, cls.PARAMETERS)


def _check_declarations(owner: str, parameters: Any) -> None:
    if not isinstance(parameters, (list, tuple)) or not all(
        isinstance(parameter, Param) for parameter in parameters
    ):
        raise ValueError(f"{owner}.PARAMETERS must be a list of Param(...) declarations")
    seen = set()
    for parameter in parameters:
        if parameter.name in seen:
            raise ValueError(f"parameter `{parameter.name}` is declared twice in {owner}")
        seen.add(parameter.name)


class Params:
    """A policy's parameters: the ``[application.policy] params`` table,
    which reaches the plugin as a JSON object.

    A key that is absent reads as its declared default, if it has one.
    Every getter raises :class:`PolicyError` with a message naming the
    parameter, what was expected and what was found.
    """

    def __init__(self, values: dict, parameters: Iterable[Param] = ()):
        parameters = list(parameters)
        self._values = values
        self._defaults = {p.name: p.default for p in parameters if p.has_default}
        # The declared names, when there are declarations: a getter for
        # another name is the policy's own bug (a typo in its code), not a
        # parameter the configuration left out.
        self._declared = [p.name for p in parameters]

    @classmethod
    def from_json(cls, text: str, parameters: Iterable[Param] = ()) -> "Params":
        """Parses the JSON text the host passes to ``configure``; it must be an object."""
        try:
            value = json.loads(text)
        except ValueError as error:
            raise PolicyError(f"parameters are not valid JSON: {error}") from None
        if not isinstance(value, dict):
            raise PolicyError(
                f"parameters must be a table (a JSON object), found {_describe(value)}"
            )
        return cls(value, parameters)

    def keys(self) -> List[str]:
        """The names of the parameters present, sorted as the Rust SDK sorts them."""
        return sorted(self._values)

    def __contains__(self, key: str) -> bool:
        """Whether the parameter is present (a declared default does not count)."""
        return key in self._values

    def get_value(self, key: str) -> Any:
        """The raw JSON value of a parameter, or its declared default
        (``None`` when neither)."""
        if key in self._values:
            return self._values[key]
        return self._defaults.get(key)

    def _given(self, key: str) -> bool:
        if self._declared and key not in self._declared:
            # Not a PolicyError: a bug of the policy's code, said with
            # where it is (see _error_text).
            raise LookupError(
                f"the code reads parameter `{key}`, which PARAMETERS does not declare "
                f"(declared: {_list_or_none(self._declared)})"
            )
        return key in self._values or key in self._defaults

    def deny_unknown(self, known: List[str]) -> None:
        """Refuses any parameter not in ``known``, listing the valid names
        and suggesting the closest, so that a misspelt parameter is an error
        rather than a setting silently left at its default."""
        unknown = [key for key in self.keys() if key not in known]
        if not unknown:
            return
        if len(unknown) == 1:
            message = f"unknown parameter `{unknown[0]}`"
        else:
            message = "unknown parameters " + ", ".join(f"`{key}`" for key in unknown)
        message += f"; valid parameters: {_list_or_none(known)}"
        suggestion = _closest(unknown[0], known)
        if suggestion is not None:
            message += f" (did you mean `{suggestion}`?)"
        raise PolicyError(message)

    def get_opt_str(self, key: str) -> Optional[str]:
        """An optional string parameter."""
        if not self._given(key):
            return None
        value = self.get_value(key)
        if not isinstance(value, str):
            raise _wrong_type(key, "a string", value)
        return value

    def get_str(self, key: str) -> str:
        """A required string parameter."""
        value = self.get_opt_str(key)
        if value is None:
            raise _missing(key, "a string")
        return value

    def get_str_or(self, key: str, default: str) -> str:
        """A string parameter, or ``default`` when absent."""
        value = self.get_opt_str(key)
        return default if value is None else value

    def get_opt_f64(self, key: str) -> Optional[float]:
        """An optional number parameter (integer or not)."""
        if not self._given(key):
            return None
        value = self.get_value(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _wrong_type(key, "a number", value)
        return float(value)

    def get_f64(self, key: str) -> float:
        """A required number parameter."""
        value = self.get_opt_f64(key)
        if value is None:
            raise _missing(key, "a number")
        return value

    def get_f64_or(self, key: str, default: float) -> float:
        """A number parameter, or ``default`` when absent."""
        value = self.get_opt_f64(key)
        return default if value is None else value

    def get_opt_u32(self, key: str) -> Optional[int]:
        """An optional whole number in 0..=U32_MAX; ``2.0`` is accepted as 2,
        ``2.5`` and ``-1`` are errors."""
        if not self._given(key):
            return None
        value = self.get_value(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _wrong_type(key, _WHOLE_NUMBER, value)
        if isinstance(value, float) and (not math.isfinite(value) or value != math.floor(value)):
            raise _wrong_type(key, _WHOLE_NUMBER, value)
        if not 0 <= value <= U32_MAX:
            raise _wrong_type(key, _WHOLE_NUMBER, value)
        return int(value)

    def get_u32(self, key: str) -> int:
        """A required whole-number parameter; see :meth:`get_opt_u32`."""
        value = self.get_opt_u32(key)
        if value is None:
            raise _missing(key, "a whole number")
        return value

    def get_u32_or(self, key: str, default: int) -> int:
        """A whole-number parameter, or ``default`` when absent."""
        value = self.get_opt_u32(key)
        return default if value is None else value

    def get_opt_bool(self, key: str) -> Optional[bool]:
        """An optional boolean parameter."""
        if not self._given(key):
            return None
        value = self.get_value(key)
        if not isinstance(value, bool):
            raise _wrong_type(key, "true or false", value)
        return value

    def get_bool(self, key: str) -> bool:
        """A required boolean parameter."""
        value = self.get_opt_bool(key)
        if value is None:
            raise _missing(key, "true or false")
        return value

    def get_bool_or(self, key: str, default: bool) -> bool:
        """A boolean parameter, or ``default`` when absent."""
        value = self.get_opt_bool(key)
        return default if value is None else value


# --- the export ------------------------------------------------------------


# This kit's own modules: a bug's place is the innermost frame outside them.
_KIT_FILES = ("flinkscale_policy.py", "flinkscale_interpreter.py")


def _where(error: BaseException) -> str:
    """`` (at step.py:20, in on_decide)``: the innermost frame of the
    plugin's own code in ``error``'s traceback (the file's base name: the
    build packs modules under folders of its own), or ``""``."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if os.path.basename(frame.filename) not in _KIT_FILES
    ]
    if not frames:
        return ""
    frame = frames[-1]
    return f" (at {os.path.basename(frame.filename)}:{frame.lineno}, in {frame.name})"


def _error_text(error: Exception) -> str:
    """The text of the contract's error for an exception out of a policy,
    its surrogates written as escapes (:func:`_carried`)."""
    if isinstance(error, PolicyError):
        return _carried(str(error))
    # A bug in the policy, not a configuration mistake: say what broke, and
    # where, so that the host's log leads the author to it.
    return _carried(f"{type(error).__name__}: {error}{_where(error)}")


def _metadata(plugin) -> PluginMetadata:
    """The contract's ``metadata`` of a policy or an interpreter class:
    its ``NAME``, ``VERSION``, ``SUMMARY`` and ``PARAMETERS``."""
    return PluginMetadata(
        plugin.NAME,
        plugin.VERSION,
        plugin.SUMMARY,
        [
            _WitParameter(
                parameter.name,
                # `alarm-id` is the enum member ALARM_ID.
                _WitParameterKind[parameter.kind.upper().replace("-", "_")],
                parameter.required,
                parameter.default_json,
                parameter.meaning,
            )
            for parameter in plugin.PARAMETERS
        ],
    )


def _configured(cls, params_json: str):
    """A fresh instance of the policy or interpreter class ``cls`` (so that
    nothing of a previous configuration survives into this one), set up
    from ``params_json``; any exception becomes the contract's ``err``."""
    try:
        plugin = cls()
        params = Params.from_json(params_json, cls.PARAMETERS)
        params.deny_unknown([parameter.name for parameter in cls.PARAMETERS])
        plugin.setup(params)
    except Exception as error:
        raise Err(_error_text(error)) from None
    return plugin


# The `scaling-policy` world's export. In a `metric-interpreter` build
# (flinkscale_interpreter.py reuses this module's parameter layer) the
# bindings have no `Policy`, and nothing here exports one.
_PolicyExport = getattr(_exports, "Policy", object)


class PolicyBase(_PolicyExport):
    """Implements the ``policy`` export once; a policy sets ``NAME``,
    ``VERSION``, ``SUMMARY`` and ``PARAMETERS`` and overrides :meth:`setup`
    and :meth:`on_decide`.

    ``PARAMETERS`` is the one place the parameters are described: the host
    documents and checks them from ``metadata``, ``configure`` refuses any
    key not declared (suggesting the closest declared one) before
    :meth:`setup` runs, and :class:`Params` reads an absent key as its
    declared default. ``configure`` parses the JSON into :class:`Params`,
    forgets any previous configuration (a failed reconfiguration must not
    leave the old one answering) and calls :meth:`setup`; ``decide`` refuses
    with ``not configured`` until a ``configure`` has succeeded. Exceptions
    become the ``err`` the contract expects.
    """

    #: The plugin's name, for the host's logs and records.
    NAME = "python-policy"
    #: The plugin's own version.
    VERSION = "0.0.0"
    #: What the plugin does, in one sentence.
    SUMMARY = "A scaling policy written in Python."
    #: Every parameter the policy accepts, as :class:`Param` declarations,
    #: in the order its documentation lists them.
    PARAMETERS: List[Param] = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _check_metadata(cls)

    def setup(self, params: Params) -> None:
        """Reads and validates the parameters; raise :class:`PolicyError` to refuse them."""

    def on_decide(self, evaluation: Evaluation) -> Decision:
        """Decides what to do now; return :func:`hold` or :func:`scale_to`."""
        raise NotImplementedError("a policy must override on_decide")

    def metadata(self) -> PluginMetadata:
        """The contract's ``metadata``: ``NAME``, ``VERSION``, ``SUMMARY``
        and ``PARAMETERS``."""
        return _metadata(self)

    def configure(self, params_json: str) -> None:
        """The contract's ``configure``; a policy writes :meth:`setup` instead."""
        global _ACTIVE
        _ACTIVE = None
        _ACTIVE = _configured(type(self), params_json)

    def decide(self, evaluation: Evaluation) -> Decision:
        """The contract's ``decide``; a policy writes :meth:`on_decide` instead."""
        if _ACTIVE is None:
            raise Err(NOT_CONFIGURED)
        try:
            return _checked_decision(_ACTIVE.on_decide(evaluation))
        except Exception as error:
            raise Err(_error_text(error)) from None


# The configured policy of this instance. Module state rather than `self`:
# the bindings do not promise to call every export on the same object.
_ACTIVE: Optional[PolicyBase] = None
