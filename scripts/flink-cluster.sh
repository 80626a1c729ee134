#!/usr/bin/env bash
# Starts or stops a standalone Flink session cluster on loopback, for the
# real-Flink test (host/tests/flink.rs) and for trying the `flink` target by
# hand. The distribution is the one the `apache-flink` PyPI package bundles
# (tests/flink/requirements.txt, installed into .venv): its bin/ and lib/ are
# a full Flink, so no tarball download is needed.
#
#   scripts/flink-cluster.sh start DIR [REST_PORT]   # prints the REST URL
#   scripts/flink-cluster.sh stop DIR
#   scripts/flink-cluster.sh kill-taskmanager DIR    # SIGKILL it, start a new one
#   scripts/flink-cluster.sh lose-taskmanager DIR    # SIGKILL it (start-taskmanager starts a new one)
#   scripts/flink-cluster.sh start-taskmanager DIR
#   scripts/flink-cluster.sh kill-jobmanager DIR     # SIGKILL it (without HA its jobs are lost)
#   scripts/flink-cluster.sh start-jobmanager DIR    # a new one; returns once the TaskManager is back
#   scripts/flink-cluster.sh start-standby DIR       # with FLINK_HA: a second JobManager, prints its URL
#   scripts/flink-cluster.sh kill-standby DIR        # SIGKILL that one
#
# Everything the cluster writes (config, logs, pid files, tmp) lives in DIR,
# so several clusters can run side by side with different ports. The
# adaptive scheduler is on (it is what in-place rescaling through
# PUT /jobs/{id}/resource-requirements needs); one TaskManager with two
# slots (FLINK_SLOTS=n for another number) and small memory, sized for a
# 2-core CI machine. FLINK_RESTARTS=n lets a job restart up to n times after
# a failure (a lost TaskManager; 1 s apart, heartbeats every second so that
# a killed one is noticed at once, and a TaskManager whose JobManager is
# gone looks for the new one after 10 s of silence instead of Flink's 50);
# without it a failure ends the job, as Flink's default without checkpoints
# does. FLINK_HA=zookeeper gives the cluster JobManager high availability:
# a ZooKeeper server (the one the distribution bundles, bin/zookeeper.sh) on
# REST_PORT + 2, the JobManager's leader and its jobs' graphs kept there and
# in DIR/ha, so that a JobManager started after one was killed recovers the
# jobs under their ids, with the resource requirements they were last given.
# start-standby starts a second JobManager beside it (REST on REST_PORT + 3,
# RPC on REST_PORT + 4, its pid, logs and config in DIR/standby): a standby
# while the first leads, which takes over the jobs when the first is killed;
# kill-standby kills it, and start-standby starts it again. After
# lose-taskmanager the cluster has no slots until start-taskmanager: a
# JobManager started meanwhile is ready with none, and with high
# availability shows its recovered jobs CREATED, with a placeholder graph
# (created at time 0), until slots come.
set -euo pipefail
cmd="${1:-}"
dir="${2:-}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
    echo "usage: $0 start|stop DIR [REST_PORT]" >&2
    exit 2
fi
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${FLINK_PYTHON:-$repo/.venv/bin/python}"
if [ ! -x "$python" ]; then
    echo "error: $python is missing; install tests/flink/requirements.txt into .venv" >&2
    exit 1
fi
flink_home="$("$python" -c 'import os, pyflink; print(os.path.dirname(pyflink.__file__))')"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
export FLINK_HOME="$flink_home"
export FLINK_CONF_DIR="$dir/conf"
export FLINK_LOG_DIR="$dir/log"
export FLINK_PID_DIR="$dir"

# Waits until the REST API (at $3, by default the cluster's) answers and
# the TaskManager registered its slots; writes the milliseconds since $1 to
# DIR/$2 and prints the URL.
wait_ready() {
    local url slots ms
    url="${3:-$(cat "$dir/rest_url")}"
    slots="$(cat "$dir/slots")"
    # No TaskManager since lose-taskmanager: ready with no slots.
    if [ -e "$dir/taskmanager_lost" ]; then
        slots=0
    fi
    for _ in $(seq 1 600); do
        if "$python" -c 'import json, sys, urllib.request
sys.exit(json.load(urllib.request.urlopen(sys.argv[1] + "/overview", timeout=2))["slots-total"] != int(sys.argv[2]))' "$url" "$slots" 2>/dev/null; then
            ms=$(( ($(date +%s%N) - $1) / 1000000 ))
            echo "$ms" >"$dir/$2"
            echo "$url"
            return 0
        fi
        sleep 0.1
    done
    echo "error: Flink at $url did not come up in 60 s; logs in $FLINK_LOG_DIR" >&2
    tail -n 30 "$FLINK_LOG_DIR"/*.log >&2 || true
    exit 1
}

# Loses one Flink process as a crash loses it: SIGKILL to the newest pid in
# $1's pid file (flink-*-standalonesession.pid or flink-*-taskexecutor.pid)
# under the pid folder $2, nothing said to the rest of the cluster; then
# Flink's own stop script ($3, jobmanager.sh or taskmanager.sh, with the same
# folders) tidies the pid file up.
crash() {
    local kind="$1" pid_dir="$2" daemon="$3" pid_file
    pid_file="$(ls "$pid_dir"/flink-*-"$kind".pid)"
    kill -9 "$(tail -n 1 "$pid_file")"
    FLINK_PID_DIR="$pid_dir" "$flink_home/bin/$daemon" stop >/dev/null 2>&1 || true
}

case "$cmd" in
start)
    port="${3:-8081}"
    slots="${FLINK_SLOTS:-2}"
    # The TaskManager finds the JobManager by a fixed RPC port (0 is
    # refused there), so it is derived from the REST port; the other ports
    # are 0, free ones picked by each process.
    mkdir -p "$FLINK_CONF_DIR" "$FLINK_LOG_DIR" "$dir/tmp"
    cp "$flink_home/conf/log4j.properties" "$flink_home/conf/log4j-console.properties" "$FLINK_CONF_DIR/"
    java_opts="$(sed -n 's/^ *all: //p' "$flink_home/conf/config.yaml" | head -n 1)"
    cat >"$FLINK_CONF_DIR/config.yaml" <<CONF
env.java.opts.all: $java_opts
jobmanager.bind-host: 127.0.0.1
jobmanager.rpc.address: 127.0.0.1
jobmanager.rpc.port: $((port + 1))
jobmanager.memory.process.size: 768m
jobmanager.scheduler: adaptive
taskmanager.bind-host: 127.0.0.1
taskmanager.host: 127.0.0.1
taskmanager.rpc.port: 0
taskmanager.numberOfTaskSlots: $slots
taskmanager.memory.process.size: 1024m
taskmanager.memory.managed.size: 64m
taskmanager.memory.network.min: 32m
taskmanager.memory.network.max: 32m
blob.server.port: 0
parallelism.default: 1
rest.address: 127.0.0.1
rest.bind-address: 127.0.0.1
rest.port: $port
io.tmp.dirs: $dir/tmp
web.tmpdir: $dir/tmp
metrics.fetcher.update-interval: 2000
jobmanager.adaptive-scheduler.resource-stabilization-timeout: 2s
# Flink's defaults wait up to about 30 s before acting on new resource
# requirements (cooldown after a rescale, and without checkpoints the
# rescale trigger's max delay); shortened so the test's rescales take seconds.
jobmanager.adaptive-scheduler.executing.cooldown-after-rescaling: 3s
jobmanager.adaptive-scheduler.executing.resource-stabilization-timeout: 2s
jobmanager.adaptive-scheduler.rescale-trigger.max-delay: 3s
CONF
    if [ -n "${FLINK_RESTARTS:-}" ]; then
        cat >>"$FLINK_CONF_DIR/config.yaml" <<CONF
restart-strategy.type: fixed-delay
restart-strategy.fixed-delay.attempts: $FLINK_RESTARTS
restart-strategy.fixed-delay.delay: 1s
heartbeat.interval: 1000
heartbeat.timeout: 10000
CONF
    fi
    case "${FLINK_HA:-}" in
    "") ;;
    zookeeper)
        zk_port=$((port + 2))
        mkdir -p "$dir/zookeeper" "$dir/ha"
        cat >"$FLINK_CONF_DIR/zoo.cfg" <<CONF
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/zookeeper
clientPort=$zk_port
clientPortAddress=127.0.0.1
admin.enableServer=false
CONF
        cat >>"$FLINK_CONF_DIR/config.yaml" <<CONF
high-availability.type: zookeeper
high-availability.zookeeper.quorum: 127.0.0.1:$zk_port
high-availability.storageDir: file://$dir/ha
# A dead leader's ZooKeeper session ends after 10 s instead of the 40 s
# ZooKeeper caps Flink's default (60 s) at, so a standby takes over sooner.
high-availability.zookeeper.client.session-timeout: 10000
zookeeper.heap.mb: 128
CONF
        "$flink_home/bin/zookeeper.sh" start 1 >"$FLINK_LOG_DIR/zookeeper.out" 2>&1
        zk_up=""
        for _ in $(seq 1 300); do
            if "$python" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$zk_port" 2>/dev/null; then
                zk_up=yes
                break
            fi
            sleep 0.1
        done
        if [ -z "$zk_up" ]; then
            echo "error: ZooKeeper on 127.0.0.1:$zk_port did not come up in 30 s; logs in $FLINK_LOG_DIR" >&2
            tail -n 30 "$FLINK_LOG_DIR"/*zookeeper* >&2 || true
            exit 1
        fi
        ;;
    *)
        echo "error: FLINK_HA=$FLINK_HA; valid: zookeeper, or unset for none" >&2
        exit 2
        ;;
    esac
    url="http://127.0.0.1:$port"
    echo "$url" >"$dir/rest_url"
    echo "$slots" >"$dir/slots"
    started=$(date +%s%N)
    "$flink_home/bin/jobmanager.sh" start >"$FLINK_LOG_DIR/start.out" 2>&1
    "$flink_home/bin/taskmanager.sh" start >>"$FLINK_LOG_DIR/start.out" 2>&1
    wait_ready "$started" startup_ms
    ;;
kill-jobmanager)
    # The JobManager lost as a crash loses it. Without high availability
    # its jobs are gone with it; with it (FLINK_HA) the next JobManager
    # recovers them. The TaskManager stays and waits for one.
    crash standalonesession "$dir" jobmanager.sh
    ;;
kill-standby)
    FLINK_CONF_DIR="$dir/standby/conf" crash standalonesession "$dir/standby" jobmanager.sh
    ;;
start-jobmanager)
    # A new JobManager on the same ports, as a supervisor would start it;
    # ready once the TaskManager has registered with it again.
    started=$(date +%s%N)
    "$flink_home/bin/jobmanager.sh" start >>"$FLINK_LOG_DIR/start.out" 2>&1
    wait_ready "$started" restart_ms
    ;;
start-standby)
    # The same configuration but the JobManager's own ports; ready once
    # its REST API answers for the cluster (a standby forwards to the
    # leader).
    port="$(sed -n 's/^rest.port: //p' "$FLINK_CONF_DIR/config.yaml")"
    if ! grep -q '^high-availability.type:' "$FLINK_CONF_DIR/config.yaml"; then
        echo "error: a standby JobManager needs a cluster started with FLINK_HA" >&2
        exit 2
    fi
    standby="$dir/standby"
    mkdir -p "$standby/conf" "$standby/log"
    cp "$FLINK_CONF_DIR"/log4j*.properties "$standby/conf/"
    sed -e "s/^rest.port: .*/rest.port: $((port + 3))/" \
        -e "s/^jobmanager.rpc.port: .*/jobmanager.rpc.port: $((port + 4))/" \
        "$FLINK_CONF_DIR/config.yaml" >"$standby/conf/config.yaml"
    started=$(date +%s%N)
    FLINK_CONF_DIR="$standby/conf" FLINK_LOG_DIR="$standby/log" FLINK_PID_DIR="$standby" \
        "$flink_home/bin/jobmanager.sh" start >>"$FLINK_LOG_DIR/start.out" 2>&1
    wait_ready "$started" standby_ms "http://127.0.0.1:$((port + 3))"
    ;;
kill-taskmanager)
    # A TaskManager lost as a crash loses it (SIGKILL, nothing said to the
    # JobManager), then a new one in its place, as a supervisor would start.
    crash taskexecutor "$dir" taskmanager.sh
    "$flink_home/bin/taskmanager.sh" start >>"$FLINK_LOG_DIR/start.out" 2>&1
    ;;
lose-taskmanager)
    # As kill-taskmanager, without a new one: the cluster has no slots
    # until start-taskmanager.
    crash taskexecutor "$dir" taskmanager.sh
    touch "$dir/taskmanager_lost"
    ;;
start-taskmanager)
    rm -f "$dir/taskmanager_lost"
    "$flink_home/bin/taskmanager.sh" start >>"$FLINK_LOG_DIR/start.out" 2>&1
    ;;
stop)
    "$flink_home/bin/taskmanager.sh" stop-all >/dev/null 2>&1 || true
    "$flink_home/bin/jobmanager.sh" stop-all >/dev/null 2>&1 || true
    if [ -d "$dir/standby" ]; then
        FLINK_CONF_DIR="$dir/standby/conf" FLINK_PID_DIR="$dir/standby" \
            "$flink_home/bin/jobmanager.sh" stop-all >/dev/null 2>&1 || true
    fi
    if ls "$dir"/flink-*-zookeeper.pid >/dev/null 2>&1; then
        "$flink_home/bin/zookeeper.sh" stop >/dev/null 2>&1 || true
    fi
    ;;
*)
    echo "usage: $0 start|stop|kill-taskmanager|lose-taskmanager|start-taskmanager|kill-jobmanager|start-jobmanager|start-standby|kill-standby DIR [REST_PORT]" >&2
    exit 2
    ;;
esac
