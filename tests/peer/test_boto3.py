"""The peer-client check: boto3, a client nobody on this project wrote,
drives `flinkscale emulate` and checks that its answers parse and mean what
AWS's would.

The Rust agent's SDK is one judge of the emulator's wire format; boto3 is
the other. It speaks kinesisanalyticsv2 over AWS JSON 1.1 and CloudWatch
over AWS JSON 1.0 (the Rust SDK speaks CloudWatch over Smithy RPC v2 CBOR),
parses every response by the service models and raises modeled
exceptions from error codes. botocore checks requests, not responses: a
field it does not know is dropped and a missing one left out, so the tests
assert the fields and types they rely on; a field with the wrong name or
type, a timestamp in the wrong unit or an error in the wrong shape fails
those assertions. What the emulator does is judged against AWS's
documentation only where a test says so: a behaviour both it and the
agent got wrong the same way would pass here.

Run from the repository root with `scripts/test.sh`, or
`FLINKSCALE_BIN=target/debug/flinkscale .venv/bin/python -m pytest -q tests/peer`.
The scenario is tests/fixtures/scenarios/e2e-peer.toml.
"""

import datetime
import json
import os
import queue
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import botocore
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "tests" / "fixtures" / "scenarios" / "e2e-peer.toml"
# Model seconds per wall second: 5 s periods cover 50 model seconds.
SPEED = 10
# GetMetricData datapoints per page: small, so that paging is exercised.
PAGE_SIZE = 7
# The applications of the scenario and what they are known to be.
APP = "peer-app"
APP_KPU = 2
APP_PARALLELISM_PER_KPU = 2
APP_RECORDS_PER_SEC = 500.0


def _binary():
    path = Path(os.environ.get("FLINKSCALE_BIN", "target/debug/flinkscale"))
    return path if path.is_absolute() else REPO / path


class Emulator:
    """A running `flinkscale emulate` and its control API."""

    def __init__(self, endpoint, process, log_path):
        self.endpoint = endpoint
        self.process = process
        self.log_path = log_path

    def control(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.endpoint + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def calls(self):
        return self.control("GET", "/_emulator/calls")["calls"]

    def app(self, name):
        state = self.control("GET", "/_emulator/state")
        return next(a for a in state["applications"] if a["name"] == name)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    binary = _binary()
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: build it with `cargo build -p flinkscale` (or set FLINKSCALE_BIN)")
    log_path = tmp_path_factory.mktemp("emulator") / "emulator.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(binary),
                "emulate",
                "--scenario",
                str(SCENARIO),
                "--listen",
                "127.0.0.1:0",
                "--speed",
                str(SPEED),
                "--page-size",
                str(PAGE_SIZE),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
    lines = queue.Queue()

    def read_stdout():
        # The first line is the endpoint; keep draining after it so the
        # emulator never blocks on a full pipe.
        for line in process.stdout:
            lines.put(line.decode(errors="replace").strip())

    threading.Thread(target=read_stdout, daemon=True).start()
    try:
        try:
            first = lines.get(timeout=30)
        except queue.Empty:
            pytest.fail(f"`flinkscale emulate` printed no endpoint within 30 s; log:\n{log_path.read_text()}")
        prefix = "flinkscale emulator listening on "
        assert first.startswith(prefix), f"unexpected first line {first!r}; log:\n{log_path.read_text()}"
        yield Emulator(first[len(prefix):], process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _client(service, emulator, **config):
    return boto3.client(
        service,
        endpoint_url=emulator.endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLEPEER",
        aws_secret_access_key="peer-secret-not-real",
        config=Config(**config) if config else None,
    )


@pytest.fixture(scope="session")
def msf(emulator):
    return _client("kinesisanalyticsv2", emulator)


@pytest.fixture(scope="session")
def cw(emulator):
    return _client("cloudwatch", emulator)


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _stat_query(query_id, metric_name, stat, period, namespace="AWS/KinesisAnalytics", dimensions=None):
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {
                "Namespace": namespace,
                "MetricName": metric_name,
                "Dimensions": dimensions or [{"Name": "Application", "Value": APP}],
            },
            "Period": period,
            "Stat": stat,
        },
    }


def _get_all(cw, **kwargs):
    """GetMetricData with every NextToken followed; results merged by Id."""
    merged = {}
    pages = 0
    while True:
        page = cw.get_metric_data(**kwargs)
        pages += 1
        for result in page["MetricDataResults"]:
            entry = merged.setdefault(result["Id"], {"Timestamps": [], "Values": [], "StatusCode": None})
            entry["Timestamps"] += result["Timestamps"]
            entry["Values"] += result["Values"]
            entry["StatusCode"] = result["StatusCode"]
        if "NextToken" not in page:
            return merged, pages
        kwargs["NextToken"] = page["NextToken"]


def _wait_for_datapoints(cw, period, count, timeout=60):
    """Waits until `count` datapoints of `period` seconds are published."""
    deadline = time.monotonic() + timeout
    while True:
        end = _now()
        merged, _ = _get_all(
            cw,
            MetricDataQueries=[_stat_query("kpus", "KPUs", "Average", period)],
            StartTime=end - datetime.timedelta(minutes=10),
            EndTime=end,
        )
        if len(merged["kpus"]["Timestamps"]) >= count:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {count} datapoints of {period} s after {timeout} s: {merged}")
        time.sleep(0.5)


# --- kinesisanalyticsv2 (AWS JSON 1.1) ---


def test_describe_application_has_the_fields_and_types_aws_answers(msf):
    detail = msf.describe_application(ApplicationName=APP)["ApplicationDetail"]
    assert detail["ApplicationName"] == APP
    assert detail["ApplicationARN"].startswith("arn:aws:kinesisanalytics:")
    assert detail["ApplicationARN"].endswith(f":application/{APP}")
    assert detail["ApplicationStatus"] == "RUNNING"
    assert isinstance(detail["ApplicationVersionId"], int) and detail["ApplicationVersionId"] >= 1
    assert detail["RuntimeEnvironment"].startswith("FLINK-")
    created = detail["CreateTimestamp"]
    assert isinstance(created, datetime.datetime) and created.tzinfo is not None
    # Epoch seconds, not milliseconds: a date within the last day, not in
    # the year 50000.
    assert _now() - datetime.timedelta(days=1) < created <= _now() + datetime.timedelta(seconds=5)
    parallelism = detail["ApplicationConfigurationDescription"]["FlinkApplicationConfigurationDescription"][
        "ParallelismConfigurationDescription"
    ]
    assert parallelism["ConfigurationType"] == "CUSTOM"
    assert parallelism["ParallelismPerKPU"] == APP_PARALLELISM_PER_KPU
    assert parallelism["Parallelism"] == APP_KPU * APP_PARALLELISM_PER_KPU
    assert parallelism["CurrentParallelism"] == APP_KPU * APP_PARALLELISM_PER_KPU
    assert parallelism["AutoScalingEnabled"] is False


def test_list_applications_pages_through_every_application(msf):
    summaries = msf.list_applications()["ApplicationSummaries"]
    names = {s["ApplicationName"] for s in summaries}
    assert {"peer-app", "peer-update", "peer-errors"} <= names
    for summary in summaries:
        assert summary["ApplicationStatus"] in {"RUNNING", "UPDATING"}
        assert isinstance(summary["ApplicationVersionId"], int)
        assert summary["ApplicationARN"].endswith(":application/" + summary["ApplicationName"])
    paged, token = [], None
    while True:
        page = msf.list_applications(Limit=1, **({"NextToken": token} if token else {}))
        assert len(page["ApplicationSummaries"]) <= 1
        paged += [s["ApplicationName"] for s in page["ApplicationSummaries"]]
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(paged) == sorted(s["ApplicationName"] for s in summaries)


def _parallelism_update(parallelism, per_kpu=1):
    return {
        "FlinkApplicationConfigurationUpdate": {
            "ParallelismConfigurationUpdate": {
                "ConfigurationTypeUpdate": "CUSTOM",
                "ParallelismUpdate": parallelism,
                "ParallelismPerKPUUpdate": per_kpu,
                "AutoScalingEnabledUpdate": False,
            }
        }
    }


def test_update_application_succeeds_then_is_refused_while_updating(msf, emulator):
    name = "peer-update"
    before = msf.describe_application(ApplicationName=name)["ApplicationDetail"]
    assert before["ApplicationStatus"] == "RUNNING"
    version = before["ApplicationVersionId"]
    answer = msf.update_application(
        ApplicationName=name,
        CurrentApplicationVersionId=version,
        ApplicationConfigurationUpdate=_parallelism_update(3),
    )
    detail = answer["ApplicationDetail"]
    assert detail["ApplicationVersionId"] == version + 1
    assert detail["ApplicationStatus"] == "UPDATING"
    assert isinstance(answer.get("OperationId"), str)
    after = msf.describe_application(ApplicationName=name)["ApplicationDetail"]
    assert after["ApplicationVersionId"] == version + 1
    assert after["ApplicationStatus"] == "UPDATING"
    assert isinstance(after["LastUpdateTimestamp"], datetime.datetime)

    # UPDATING lasts 600 model seconds (a wall minute): a second update now,
    # even with the current version, is refused and changes nothing.
    with pytest.raises(msf.exceptions.ResourceInUseException) as refused:
        msf.update_application(
            ApplicationName=name,
            CurrentApplicationVersionId=version + 1,
            ApplicationConfigurationUpdate=_parallelism_update(4),
        )
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert refused.value.response["Error"]["Message"]
    assert msf.describe_application(ApplicationName=name)["ApplicationDetail"]["ApplicationVersionId"] == version + 1
    assert emulator.app(name)["updates"] == 1


@pytest.mark.parametrize(
    "exception, version_offset, parallelism, per_kpu",
    [
        # A version other than the current one: somebody else updated it.
        ("ConcurrentModificationException", 5, 2, 1),
        # Parallelism above MSF's 256 (boto3 itself only checks >= 1).
        ("InvalidArgumentException", 0, 300, 1),
        # ParallelismPerKPU above 8.
        ("InvalidArgumentException", 0, 2, 9),
        # 8 KPU against the scenario's KPU quota (account_kpu_limit) of 4.
        ("LimitExceededException", 0, 8, 1),
    ],
)
def test_a_refused_update_raises_the_modeled_exception_and_changes_nothing(
    msf, exception, version_offset, parallelism, per_kpu
):
    name = "peer-errors"
    version = msf.describe_application(ApplicationName=name)["ApplicationDetail"]["ApplicationVersionId"]
    with pytest.raises(getattr(msf.exceptions, exception)) as refused:
        msf.update_application(
            ApplicationName=name,
            CurrentApplicationVersionId=version + version_offset,
            ApplicationConfigurationUpdate=_parallelism_update(parallelism, per_kpu),
        )
    assert refused.value.response["Error"]["Code"] == exception
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    detail = msf.describe_application(ApplicationName=name)["ApplicationDetail"]
    assert detail["ApplicationVersionId"] == version
    assert detail["ApplicationStatus"] == "RUNNING"


def test_an_unknown_application_is_resource_not_found(msf):
    with pytest.raises(msf.exceptions.ResourceNotFoundException):
        msf.describe_application(ApplicationName="no-such-application")
    with pytest.raises(msf.exceptions.ResourceNotFoundException):
        msf.update_application(
            ApplicationName="no-such-application",
            CurrentApplicationVersionId=1,
            ApplicationConfigurationUpdate=_parallelism_update(2),
        )


def test_injected_faults_reach_boto3_as_aws_errors(msf, emulator):
    name = "peer-errors"
    version = msf.describe_application(ApplicationName=name)["ApplicationDetail"]["ApplicationVersionId"]
    emulator.control(
        "POST",
        "/_emulator/faults",
        {"operation": "UpdateApplication", "error": "ResourceInUseException", "count": 1},
    )
    with pytest.raises(msf.exceptions.ResourceInUseException):
        msf.update_application(
            ApplicationName=name,
            CurrentApplicationVersionId=version,
            ApplicationConfigurationUpdate=_parallelism_update(2),
        )
    assert msf.describe_application(ApplicationName=name)["ApplicationDetail"]["ApplicationVersionId"] == version
    # A 500 is retried by boto3 and the retry succeeds: the log shows both.
    emulator.control(
        "POST", "/_emulator/faults", {"operation": "DescribeApplication", "error": "InternalFailure", "count": 1}
    )
    seen = len(emulator.calls())
    assert msf.describe_application(ApplicationName=name)["ApplicationDetail"]["ApplicationName"] == name
    tail = [c for c in emulator.calls()[seen:] if c["operation"] == "DescribeApplication"]
    assert [(c["outcome"], c["http_status"], c["injected"]) for c in tail] == [
        ("InternalFailure", 500, True),
        ("ok", 200, False),
    ]
    emulator.control("DELETE", "/_emulator/faults")


def test_an_unsigned_request_is_refused(emulator):
    for service, call in [
        ("kinesisanalyticsv2", lambda c: c.list_applications()),
        ("cloudwatch", lambda c: c.list_metrics()),
    ]:
        client = _client(service, emulator, signature_version=botocore.UNSIGNED, retries={"max_attempts": 1})
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            call(client)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert "MissingAuthenticationToken" in refused.value.response["Error"]["Code"]


# --- CloudWatch (AWS JSON 1.0, what boto3 sends) ---


def test_get_metric_data_values_and_timestamps_mean_what_aws_means(cw):
    period = 5
    _wait_for_datapoints(cw, period, 4)
    end = _now()
    start = end - datetime.timedelta(minutes=10)
    queries = [
        _stat_query("kpus", "KPUs", "Average", period),
        _stat_query("samples", "KPUs", "SampleCount", period),
        _stat_query("kpu_sum", "KPUs", "Sum", period),
        _stat_query("records", "numRecordsInPerSecond", "Average", period),
        _stat_query("cpu", "containerCPUUtilization", "Maximum", period),
    ]
    merged, _ = _get_all(cw, MetricDataQueries=queries, StartTime=start, EndTime=end)
    assert set(merged) == {"kpus", "samples", "kpu_sum", "records", "cpu"}
    stamps = merged["kpus"]["Timestamps"]
    assert len(stamps) >= 4
    for query_id, result in merged.items():
        assert result["StatusCode"] == "Complete", query_id
        assert len(result["Timestamps"]) == len(result["Values"]), query_id
        # The same metric source, the same periods.
        assert result["Timestamps"] == stamps, query_id
    for stamp in stamps:
        assert isinstance(stamp, datetime.datetime) and stamp.tzinfo is not None
        assert stamp.timestamp() % period == 0, f"{stamp} is not on a {period} s boundary"
        assert start - datetime.timedelta(seconds=period) < stamp < end
    # Newest first by default.
    assert stamps == sorted(stamps, reverse=True)
    assert all(a - b == datetime.timedelta(seconds=period) for a, b in zip(stamps, stamps[1:]))
    # A 5 s wall period covers 50 model seconds: 50 one-second samples, each
    # of them 2 KPU (the oldest period may have begun before the emulator).
    full = list(zip(merged["samples"]["Values"], merged["kpu_sum"]["Values"], merged["kpus"]["Values"]))[:-1]
    for samples, total, average in full:
        assert samples == period * SPEED
        assert total == pytest.approx(APP_KPU * samples)
        assert average == pytest.approx(APP_KPU)
    for value in merged["records"]["Values"][:-1]:
        assert value == pytest.approx(APP_RECORDS_PER_SEC)
    for value in merged["cpu"]["Values"]:
        assert 0.0 <= value <= 100.0

    ascending, _ = _get_all(
        cw,
        MetricDataQueries=[_stat_query("kpus", "KPUs", "Average", period)],
        StartTime=start,
        EndTime=end,
        ScanBy="TimestampAscending",
    )
    assert ascending["kpus"]["Timestamps"] == sorted(stamps)
    assert ascending["kpus"]["Values"] == list(reversed(merged["kpus"]["Values"]))


def test_get_metric_data_pages_with_boto3s_paginator(cw):
    period = 5
    _wait_for_datapoints(cw, period, 4)
    end = _now()
    queries = [
        _stat_query(f"q{i}", "KPUs", stat, period)
        for i, stat in enumerate(["Average", "Minimum", "Maximum", "Sum", "SampleCount"])
    ]
    paginator = cw.get_paginator("get_metric_data")
    pages = list(
        paginator.paginate(
            MetricDataQueries=queries,
            StartTime=end - datetime.timedelta(minutes=10),
            EndTime=end,
        )
    )
    assert len(pages) > 1, "the emulator runs with --page-size 7: several pages expected"
    merged = {}
    for page in pages:
        assert sum(len(r["Values"]) for r in page["MetricDataResults"]) <= PAGE_SIZE
        for result in page["MetricDataResults"]:
            merged.setdefault(result["Id"], []).extend(zip(result["Timestamps"], result["Values"]))
    assert set(merged) == {q["Id"] for q in queries}
    reference = [t for t, _ in merged["q0"]]
    assert len(reference) >= 4
    assert len(set(reference)) == len(reference), "a datapoint on two pages"
    for query_id, points in merged.items():
        assert [t for t, _ in points] == reference, query_id
    for (_, average), (_, minimum), (_, maximum) in zip(merged["q0"], merged["q1"], merged["q2"]):
        assert average == minimum == maximum == pytest.approx(APP_KPU)
    with pytest.raises(cw.exceptions.InvalidNextToken):
        cw.get_metric_data(
            MetricDataQueries=queries,
            StartTime=end - datetime.timedelta(minutes=10),
            EndTime=end,
            NextToken="not-a-token",
        )


def test_an_invalid_period_is_invalid_parameter_value(cw):
    end = _now()
    with pytest.raises(cw.exceptions.InvalidParameterValueException) as refused:
        cw.get_metric_data(
            MetricDataQueries=[_stat_query("kpus", "KPUs", "Average", 7)],
            StartTime=end - datetime.timedelta(minutes=5),
            EndTime=end,
        )
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_list_metrics_filters_by_dimension(cw):
    metrics = [m for page in cw.get_paginator("list_metrics").paginate(Dimensions=[{"Name": "Application", "Value": APP}]) for m in page["Metrics"]]
    names = {m["MetricName"] for m in metrics}
    assert {
        "containerCPUUtilization",
        "busyTimeMsPerSecond",
        "numRecordsInPerSecond",
        "millisBehindLatest",
        "records_lag_max",
        "KPUs",
    } <= names
    for metric in metrics:
        assert metric["Namespace"] == "AWS/KinesisAnalytics"
        assert {"Name": "Application", "Value": APP} in metric["Dimensions"]

    kinesis = cw.list_metrics(Namespace="AWS/Kinesis", Dimensions=[{"Name": "StreamName", "Value": "peer-stream"}])[
        "Metrics"
    ]
    assert {m["MetricName"] for m in kinesis} == {
        "GetRecords.IteratorAgeMilliseconds",
        "SubscribeToShardEvent.MillisBehindLatest",
    }
    efo = [m for m in kinesis if m["MetricName"] == "SubscribeToShardEvent.MillisBehindLatest"][0]
    assert sorted(efo["Dimensions"], key=lambda d: d["Name"]) == [
        {"Name": "ConsumerName", "Value": "peer-efo"},
        {"Name": "StreamName", "Value": "peer-stream"},
    ]
    # A dimension name alone matches every value.
    kafka = cw.list_metrics(Namespace="AWS/Kafka", Dimensions=[{"Name": "Consumer Group"}])["Metrics"]
    groups = {d["Value"] for m in kafka for d in m["Dimensions"] if d["Name"] == "Consumer Group"}
    assert "peer-group" in groups and len(groups) >= 3
    assert cw.list_metrics(Dimensions=[{"Name": "Application", "Value": "no-such-application"}])["Metrics"] == []


def test_alarms_reach_alarm_and_ok_and_are_deleted(cw):
    common = dict(
        Namespace="AWS/KinesisAnalytics",
        MetricName="KPUs",
        Dimensions=[{"Name": "Application", "Value": APP}],
        Statistic="Average",
        Period=10,
        EvaluationPeriods=1,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="missing",
    )
    # KPUs is 2: above 1 breaches, above 100 does not.
    cw.put_metric_alarm(AlarmName="peer-breaching", Threshold=1.0, **common)
    cw.put_metric_alarm(AlarmName="peer-not-breaching", Threshold=100.0, **common)
    names = ["peer-breaching", "peer-not-breaching"]
    deadline = time.monotonic() + 60
    while True:
        alarms = {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNames=names)["MetricAlarms"]}
        states = {name: alarms[name]["StateValue"] for name in names}
        if states == {"peer-breaching": "ALARM", "peer-not-breaching": "OK"}:
            break
        assert set(states.values()) <= {"OK", "ALARM", "INSUFFICIENT_DATA"}
        assert time.monotonic() < deadline, f"alarm states after 60 s: {states}"
        time.sleep(0.5)
    breaching = alarms["peer-breaching"]
    assert breaching["AlarmArn"].startswith("arn:aws:cloudwatch:") and breaching["AlarmArn"].endswith(
        ":alarm:peer-breaching"
    )
    assert breaching["MetricName"] == "KPUs" and breaching["Namespace"] == "AWS/KinesisAnalytics"
    assert breaching["Threshold"] == 1.0 and breaching["Period"] == 10 and breaching["EvaluationPeriods"] == 1
    assert breaching["ComparisonOperator"] == "GreaterThanThreshold"
    assert breaching["Dimensions"] == [{"Name": "Application", "Value": APP}]
    assert isinstance(breaching["StateUpdatedTimestamp"], datetime.datetime)
    assert _now() - datetime.timedelta(minutes=5) < breaching["StateUpdatedTimestamp"] <= _now() + datetime.timedelta(
        seconds=5
    )
    assert breaching["StateReason"]
    in_alarm = {a["AlarmName"] for a in cw.describe_alarms(StateValue="ALARM")["MetricAlarms"]}
    assert "peer-breaching" in in_alarm and "peer-not-breaching" not in in_alarm

    cw.delete_alarms(AlarmNames=names)
    assert cw.describe_alarms(AlarmNames=names)["MetricAlarms"] == []
