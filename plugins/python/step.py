"""`step` in Python: the reference design's step-scaling policy.

A line-for-line port of the Rust `step` plugin (``plugins/step``), written
to make the same decision, with the same reason, on every evaluation; the
test ``host/tests/polyglot.rs`` checks that on the shipped scenarios.

While the scale-out alarm is in ALARM the application grows by a factor;
else while the scale-in alarm is in ALARM it shrinks by one; always within
[max(min_kpu, 1), max_kpu]. Scale-out wins when both alarms fire.

Its parameters are declared once, in ``Policy.PARAMETERS``, with the same
names, kinds, required flags and defaults as the Rust `step`'s (the test
compares them); ``flinkscale plugin describe`` shows them.

Build: ``plugins/python/build.sh`` (gives ``target/polyglot/step-py.wasm``).
"""

import json

from flinkscale_policy import (
    U32_MAX,
    AlarmState,
    Param,
    Params,
    PolicyBase,
    PolicyError,
    alarm_state_name,
    hold,
    require_alarm,
    scale_to,
)

# The smallest factor that changes anything under each operation.
MIN_FACTOR = {"multiply": 2, "add": 1}


def check_factor(operation: str, name: str, factor: int) -> None:
    """Refuses a factor that would never change the capacity."""
    minimum = MIN_FACTOR[operation]
    if factor < minimum:
        raise PolicyError(
            f'parameter `{name}` must be at least {minimum} with operation "{operation}" '
            f"(a factor of {factor} would never change the capacity), found {factor}"
        )


def step(operation: str, out: bool, factor: int, kpu: int, min_kpu: int, max_kpu: int):
    """One step from ``kpu``: ``(target, arithmetic)``, or ``(None, limit)``
    when already at the limit in this direction.

    The arithmetic is the Rust plugin's u32 arithmetic: saturating, and
    floor division for multiply-in.
    """
    floor = max(min_kpu, 1)
    ceiling = max(max_kpu, floor)
    if operation == "multiply" and out:
        raw, symbol = min(kpu * factor, U32_MAX), "x"
    elif operation == "add" and out:
        raw, symbol = min(kpu + factor, U32_MAX), "+"
    elif operation == "multiply":
        raw, symbol = kpu // max(factor, 1), "/"
    else:
        raw, symbol = max(kpu - factor, 0), "-"
    if out and kpu >= ceiling:
        return None, ceiling
    if not out and kpu <= floor:
        return None, floor
    target = min(max(raw, floor), ceiling)
    arithmetic = f"{kpu} KPU {symbol} {factor} = {raw} KPU"
    if target != raw:
        bound = "max" if raw > ceiling else "min"
        arithmetic += f", clamped to {bound} KPU {target}"
    return target, arithmetic


class Policy(PolicyBase):
    """The step policy; componentize-py exports the class named ``Policy``."""

    NAME = "step-py"
    VERSION = "0.2.0"
    SUMMARY = (
        "The reference design's step scaling: multiply (or add to) the KPU "
        "while the scale-out alarm fires, divide (or subtract) while the "
        "scale-in alarm fires."
    )
    #: The parameters, as the Rust `step` declares them.
    PARAMETERS = [
        Param(
            "scale_out_alarm",
            "alarm-id",
            required=True,
            meaning="The alarm that asks for more capacity.",
        ),
        Param(
            "scale_in_alarm",
            "alarm-id",
            required=True,
            meaning="The alarm that asks for less capacity; not the scale-out alarm.",
        ),
        Param(
            "operation",
            "text",
            default="multiply",
            meaning="\"multiply\": out to kpu x factor, in to floor(kpu / factor) (the "
            "reference's Multiply/Divide); \"add\": out to kpu + factor, in to "
            "kpu - factor (Add/Subtract).",
        ),
        Param(
            "scale_out_factor",
            "integer",
            default=2,
            meaning="The scale-out factor: a whole number, at least 2 with \"multiply\" "
            "and at least 1 with \"add\".",
        ),
        Param(
            "scale_in_factor",
            "integer",
            default=2,
            meaning="The scale-in factor, as `scale_out_factor`.",
        ),
    ]

    def setup(self, params: Params) -> None:
        # Every value's type first, in declared order, then how the values
        # go together: the order in which the Rust `step` (reading its
        # parameters into a typed struct) finds the first mistake.
        self.scale_out_alarm = params.get_str("scale_out_alarm")
        self.scale_in_alarm = params.get_str("scale_in_alarm")
        self.operation = params.get_str("operation")
        if self.operation not in MIN_FACTOR:
            raise PolicyError(
                'parameter `operation` must be "multiply" or "add", '
                f"found {json.dumps(self.operation, ensure_ascii=False)}"
            )
        self.scale_out_factor = params.get_u32("scale_out_factor")
        self.scale_in_factor = params.get_u32("scale_in_factor")
        for name, alarm_id in (
            ("scale_out_alarm", self.scale_out_alarm),
            ("scale_in_alarm", self.scale_in_alarm),
        ):
            if alarm_id == "":
                raise PolicyError(
                    f"parameter `{name}` must name an alarm, found the empty string"
                )
        if self.scale_out_alarm == self.scale_in_alarm:
            raise PolicyError(
                "`scale_out_alarm` and `scale_in_alarm` must name different alarms, "
                f"both are `{self.scale_out_alarm}`"
            )
        check_factor(self.operation, "scale_out_factor", self.scale_out_factor)
        check_factor(self.operation, "scale_in_factor", self.scale_in_factor)

    def on_decide(self, evaluation):
        out_state = require_alarm(evaluation, self.scale_out_alarm).state
        in_state = require_alarm(evaluation, self.scale_in_alarm).state
        app = evaluation.app
        if out_state == AlarmState.ALARM:
            alarm, out, factor = self.scale_out_alarm, True, self.scale_out_factor
        elif in_state == AlarmState.ALARM:
            alarm, out, factor = self.scale_in_alarm, False, self.scale_in_factor
        else:
            return hold(
                f"no alarm in ALARM (scale-out `{self.scale_out_alarm}`: "
                f"{alarm_state_name(out_state)}, scale-in `{self.scale_in_alarm}`: "
                f"{alarm_state_name(in_state)})"
            )
        target, detail = step(self.operation, out, factor, app.kpu, app.min_kpu, app.max_kpu)
        if target is None:
            reason = f"already at {'max' if out else 'min'} KPU ({detail})"
        else:
            reason = f"`{alarm}` is in ALARM: {detail}"
        if out and in_state == AlarmState.ALARM:
            reason += f" (scale-in `{self.scale_in_alarm}` is also in ALARM; scale-out wins)"
        if target is None:
            return hold(reason)
        return scale_to(target, reason)
