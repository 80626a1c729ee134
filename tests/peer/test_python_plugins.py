"""A Python plugin tested in plain CPython, and a JavaScript one under
Node.js, before any build, as the README ("Testing a Python plugin without
building it", "Testing a JavaScript plugin without building it") tells an
author to.

componentize-py (pinned in plugins/python/requirements.txt, installed into
.venv by plugins/python/build.sh) generates the contract's bindings for a
world; with them and plugins/python on the path, the helper modules import
and a policy or an interpreter can be configured and asked like the host
asks it, with records built by hand. Each check runs in a fresh
interpreter, as the two worlds' bindings are both named `wit_world`.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMPONENTIZE_PY = ROOT / ".venv/bin/componentize-py"


def bindings(world, tmp_path):
    """The README's first command: the bindings of `world` in a folder."""
    out = tmp_path / world
    subprocess.run(
        [str(COMPONENTIZE_PY), "-d", "wit/v0.2.0", "-w", world, "bindings", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return out


def run(world, code, tmp_path):
    """The README's second: `code` with the bindings and the helpers on
    PYTHONPATH; its standard output."""
    path = os.pathsep.join([str(bindings(world, tmp_path)), str(ROOT / "plugins/python")])
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_step_policy_decides_in_plain_python(tmp_path):
    out = run(
        "scaling-policy",
        """
        from wit_world.imports.types import (
            Alarm, AlarmState, Application, AppStatus, Evaluation, Action_ScaleTo,
        )
        import step

        policy = step.Policy()
        policy.configure('{"scale_out_alarm": "hi", "scale_in_alarm": "lo"}')
        app = Application("orders", AppStatus.RUNNING, 4, 4, 1, 1, 16, 7, None, None)
        alarms = [Alarm("hi", AlarmState.ALARM, 0), Alarm("lo", AlarmState.OK, 0)]
        decision = policy.decide(Evaluation(1_000_000, app, [], alarms, []))
        assert isinstance(decision.action, Action_ScaleTo), decision
        print(decision.action.value, decision.reason)
        """,
        tmp_path,
    )
    assert out == "8 `hi` is in ALARM: 4 KPU x 2 = 8 KPU\n"


def test_a_refused_parameter_reads_as_the_host_would_get_it(tmp_path):
    out = run(
        "scaling-policy",
        """
        from componentize_py_types import Err
        import step

        try:
            step.Policy().configure('{"scale_out_alarm": "hi", "scale_in_alarm": "lo", "colour": 1}')
        except Err as error:
            print(error.value)
        """,
        tmp_path,
    )
    assert out.startswith("unknown parameter `colour`; valid parameters: "), out


def test_a_bug_in_a_policy_says_where_it_is(tmp_path):
    out = run(
        "scaling-policy",
        """
        from componentize_py_types import Err
        from wit_world.imports.types import Application, AppStatus, Evaluation
        from flinkscale_policy import Param, PolicyBase, hold

        class Buggy(PolicyBase):
            NAME = "buggy"
            VERSION = "0.1.0"
            SUMMARY = "Fails as a policy with a bug fails."
            PARAMETERS = [Param("out_alarm", "alarm-id", required=True, meaning="Scale out.")]

            def setup(self, params):
                self.typo = params.get_opt_str("outalarm")

        class Crashes(Buggy):
            def setup(self, params):
                self.alarm = params.get_str("out_alarm")

            def on_decide(self, evaluation):
                return hold({}["nope"])

        for policy in (Buggy(), Crashes()):
            try:
                policy.configure('{"out_alarm": "hi"}')
                app = Application("a", AppStatus.RUNNING, 4, 4, 1, 1, 16, 7, None, None)
                policy.decide(Evaluation(1_000_000, app, [], [], []))
            except Err as error:
                print(error.value)
        """,
        tmp_path,
    )
    reads, crashes = out.splitlines()
    # A getter for a name PARAMETERS does not declare is the code's bug,
    # said with its place, not "missing required parameter".
    assert reads.startswith(
        "LookupError: the code reads parameter `outalarm`, which PARAMETERS does not "
        "declare (declared: out_alarm) (at <string>:"
    ), reads
    assert reads.endswith(", in setup)"), reads
    assert crashes.startswith("KeyError: 'nope' (at <string>:"), crashes
    assert crashes.endswith(", in on_decide)"), crashes


def test_the_backlog_seconds_interpreter_interprets_in_plain_python(tmp_path):
    out = run(
        "metric-interpreter",
        """
        from wit_world.imports.types import Application, AppStatus, Datapoint, Series
        import backlog_seconds

        interpreter = backlog_seconds.Interpreter()
        interpreter.configure(
            '{"backlog_metric": "backlog", "processing_rate_metric": "rate"}'
        )
        app = Application("orders", AppStatus.RUNNING, 4, 4, 1, 1, 16, 7, None, None)

        def series(id, value):
            return Series(id, "AWS/Kafka", id, "Maximum", 60, [Datapoint(0, value)])

        signals = interpreter.interpret(60_000, app, [series("backlog", 6000.0), series("rate", 20.0)])
        print(sorted((s.name, s.value) for s in signals))
        """,
        tmp_path,
    )
    assert "('seconds_behind', 300.0)" in out, out


def test_the_javascript_step_policy_decides_under_node():
    node = shutil.which("node")
    assert node, "Node.js, which plugins/js/build.sh needs too"
    script = textwrap.dedent(
        """
        const { policy } = await import(process.cwd() + "/plugins/js/step.js");
        policy.configure(JSON.stringify({ scale_out_alarm: "hi", scale_in_alarm: "lo" }));
        const app = { name: "orders", status: "running", kpu: 4, parallelism: 4,
                      parallelismPerKpu: 1, minKpu: 1, maxKpu: 16, versionId: 7,
                      lastRescaleMs: null, lastUpdateDurationSecs: null };
        const alarms = [{ name: "hi", state: "alarm", sinceMs: 0 },
                        { name: "lo", state: "ok", sinceMs: 0 }];
        console.log(JSON.stringify(
            policy.decide({ nowMs: 1000000, app, metrics: [], alarms, signals: [] })));
        """
    )
    done = subprocess.run(
        [node, "--input-type=module", "-e", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "action": {"tag": "scale-to", "val": 8},
        "reason": "`hi` is in ALARM: 4 KPU x 2 = 8 KPU",
        "nextEvaluationSecs": None,
    }


def test_a_bug_in_a_javascript_policy_says_where_it_is():
    node = shutil.which("node")
    assert node, "Node.js, which plugins/js/build.sh needs too"
    script = textwrap.dedent(
        """
        const { definePolicy, hold } = await import(process.cwd() + "/plugins/js/flinkscale-policy.js");
        const parameters = [{ name: "out_alarm", kind: "alarm-id", required: true, meaning: "Scale out." }];
        class PolicyBug extends Error {
          constructor(message) { super(message); this.name = "PolicyBug"; }
        }
        const describe = { name: "buggy", version: "0.1.0", summary: "Fails as a bug does.", parameters };
        const reads = definePolicy({ ...describe,
          setup(params) { return { typo: params.getOptStr("outalarm") }; },
          decide() { return hold("never"); } });
        const crashes = definePolicy({ ...describe,
          setup(params) { return { alarm: params.getStr("out_alarm") }; },
          decide(state) { throw new PolicyBug("bug in decide"); } });
        const app = { name: "a", status: "running", kpu: 4, parallelism: 4, parallelismPerKpu: 1,
                      minKpu: 1, maxKpu: 16, versionId: 7, lastRescaleMs: null, lastUpdateDurationSecs: null };
        for (const policy of [reads, crashes]) {
          try {
            policy.configure(JSON.stringify({ out_alarm: "hi" }));
            policy.decide({ nowMs: 1000000, app, metrics: [], alarms: [], signals: [] });
          } catch (error) {
            console.log(error);
          }
        }
        """
    )
    done = subprocess.run(
        [node, "--input-type=module", "-e", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    reads, crashes = done.stdout.splitlines()
    # Where the code is, not the kit's getter, nor the error class's
    # constructor.
    assert reads == (
        "ReferenceError: the code reads parameter `outalarm`, which its parameters do not "
        "declare (declared: out_alarm) (at [eval1]:9, in setup)"
    ), reads
    assert crashes == "PolicyBug: bug in decide (at [eval1]:13, in decide)", crashes

