"""Submits the real-Flink test's load job to a running session cluster.

A datagen source at a rate the caller sets, a deliberately costly
regular-expression step, and a blackhole sink, with operator chaining off so
that each is its own vertex with its own busyTimeMsPerSecond. The SQL client
of the apache-flink wheel cannot run (the wheel leaves out the SQL gateway
jar it needs), so the job is submitted through PyFlink's Table API, which
runs the same planner in this process and hands the job to the cluster over
REST. Prints the job id and returns once the job is submitted.

    python load_job.py REST_URL JOB_NAME ROWS_PER_SECOND
"""

import sys
from urllib.parse import urlparse

from pyflink.table import EnvironmentSettings, TableEnvironment


def main() -> None:
    rest_url, job_name, rows_per_second = sys.argv[1], sys.argv[2], int(sys.argv[3])
    url = urlparse(rest_url)
    settings = EnvironmentSettings.in_streaming_mode()
    env = TableEnvironment.create(settings)
    conf = env.get_config()
    conf.set("execution.target", "remote")
    conf.set("rest.address", url.hostname)
    conf.set("rest.port", str(url.port))
    conf.set("pipeline.name", job_name)
    conf.set("pipeline.operator-chaining.enabled", "false")
    env.execute_sql(
        "CREATE TABLE src (s STRING) WITH ('connector' = 'datagen', "
        f"'rows-per-second' = '{rows_per_second}', 'fields.s.length' = '2000')"
    )
    env.execute_sql("CREATE TABLE snk (n INT) WITH ('connector' = 'blackhole')")
    result = env.execute_sql(
        "INSERT INTO snk SELECT CHAR_LENGTH(REGEXP_REPLACE(REGEXP_REPLACE(s, "
        "'(a|b|c)+[0-9a-f]*(d|e)', 'x'), '([0-9])[a-f]?', 'y')) FROM src"
    )
    print(result.get_job_client().get_job_id())


if __name__ == "__main__":
    main()
