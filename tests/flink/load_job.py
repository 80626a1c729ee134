"""Submits the real-Flink test's load job to a running session cluster.

A datagen source at a rate the caller sets, a deliberately costly
regular-expression step (quadratic in the row's length), and a blackhole sink, with operator chaining off so
that each is its own vertex with its own busyTimeMsPerSecond. The SQL client
of the apache-flink wheel cannot run (the wheel leaves out the SQL gateway
jar it needs), so the job is submitted through PyFlink's Table API, which
runs the same planner in this process and hands the job to the cluster over
REST. Prints the job id and returns once the job is submitted.

    python load_job.py [--max-parallelism N | --non-parallel] REST_URL JOB_NAME ROWS_PER_SECOND [COSTLY_FROM COSTLY_UNTIL [REPEAT [FAIL_AT]]]

With COSTLY_FROM and COSTLY_UNTIL (Unix seconds), the costly step does its
work only for rows processed in that span and passes the others on cheaply:
the load the test controls, on a job that keeps running (and keeps its id)
throughout, so that the autoscaler sees it rise and fall. REPEAT (default
1) runs the regular expression over the row repeated that many times, to
make each costly row about REPEAT squared times dearer. With FAIL_AT (Unix
seconds), every row the costly step processes during that one second throws
(a CAST of a row that is no number): the task fails and Flink restarts the
job if its restart strategy allows, as a bug or a bad record does in
production. Flink restarts it a second or more later, so it fails once.
With --max-parallelism N, the job is submitted with N key groups
(pipeline.max-parallelism) and at parallelism 1: Flink then refuses any
parallelism above N, for as long as the job runs.
With --non-parallel, the sink is fed a global COUNT(*) of the costly
step's rows: a vertex the planner runs non-parallel (parallelism and max
parallelism 1), as a windowAll or a sink's global committer is, between
vertices that scale.
"""

import sys
from urllib.parse import urlparse

from pyflink.table import EnvironmentSettings, TableEnvironment


def main() -> None:
    args = sys.argv[1:]
    max_parallelism = None
    non_parallel = False
    if args[:1] == ["--max-parallelism"]:
        max_parallelism, args = int(args[1]), args[2:]
    elif args[:1] == ["--non-parallel"]:
        non_parallel, args = True, args[1:]
    rest_url, job_name, rows_per_second = args[0], args[1], int(args[2])
    costly_from, costly_until = (
        (int(args[3]), int(args[4])) if len(args) > 4 else (0, 2**62)
    )
    repeat = int(args[5]) if len(args) > 5 else 1
    # -1: no second is the failing one.
    fail_at = int(args[6]) if len(args) > 6 else -1
    url = urlparse(rest_url)
    settings = EnvironmentSettings.in_streaming_mode()
    env = TableEnvironment.create(settings)
    conf = env.get_config()
    conf.set("execution.target", "remote")
    conf.set("rest.address", url.hostname)
    conf.set("rest.port", str(url.port))
    conf.set("pipeline.name", job_name)
    conf.set("pipeline.operator-chaining.enabled", "false")
    if max_parallelism is not None:
        conf.set("pipeline.max-parallelism", str(max_parallelism))
        # Without it the adaptive scheduler gives each vertex every slot,
        # above the key groups, and the job fails as it starts.
        conf.set("parallelism.default", "1")
    env.execute_sql(
        "CREATE TABLE src (s STRING) WITH ('connector' = 'datagen', "
        f"'rows-per-second' = '{rows_per_second}', 'fields.s.length' = '2000')"
    )
    env.execute_sql("CREATE TABLE snk (n INT) WITH ('connector' = 'blackhole')")
    # UNIX_TIMESTAMP() is evaluated per row in streaming mode, so the
    # span switches the cost on and off while the job runs.
    # A pattern that never matches ('=' is not a hex digit) but is tried
    # from every position, each try running to the end of the row and
    # backtracking: quadratic in the row's length, JIT or not.
    costly = (
        f"CHAR_LENGTH(REGEXP_REPLACE(REPEAT(s, {repeat}), '([0-9a-zA-Z]+)=', 'x'))"
    )
    # CAST, unlike TRY_CAST, throws on a string that is no number; the
    # planner cannot fold it away, as the row is only known at run time.
    rows = (
        f"SELECT CASE WHEN UNIX_TIMESTAMP() = {fail_at} "
        f"THEN CAST(CONCAT('not a number: ', s) AS INT) "
        f"WHEN UNIX_TIMESTAMP() BETWEEN {costly_from} "
        f"AND {costly_until} THEN {costly} ELSE CHAR_LENGTH(s) END AS n FROM src"
    )
    if non_parallel:
        rows = f"SELECT CAST(COUNT(*) AS INT) FROM ({rows})"
    result = env.execute_sql(f"INSERT INTO snk {rows}")
    print(result.get_job_client().get_job_id())


if __name__ == "__main__":
    main()
