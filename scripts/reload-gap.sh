#!/usr/bin/env bash
# How long a plugin dropped into plugin_dir holds up the application's
# evaluations:
#   scripts/reload-gap.sh [BIN] [NEW.wasm]
# runs BIN (default target/release/flinkscale) as `flinkscale run` against
# `flinkscale emulate` (scenario tests/fixtures/scenarios/reload.toml, 20x),
# with one application evaluated every second by target-tracking from
# plugin_dir, then replaces its file (written aside, renamed over it) with
# NEW.wasm (default: the built `hold`) plus a custom section naming the
# time, so that the agent compiles it whatever it compiled before. Prints
# the gaps between the application's evaluations before the drop-in, the
# longest gap from the drop-in to the third evaluation after the reload,
# and how long the reload took to show up in the log.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="$(realpath "${1:-target/release/flinkscale}")"
built=target/builtin-plugins/wasm32-wasip2/release
new="$(realpath "${2:-$built/hold.wasm}")"
start_plugin="$(realpath "$built/target_tracking.wasm")"
scenario="$(realpath tests/fixtures/scenarios/reload.toml)"

dir="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT
mkdir "$dir/plugins"
cp "$start_plugin" "$dir/plugins/policy.wasm"
cat > "$dir/agent.toml" <<EOF
[agent]
plugin_dir = "$dir/plugins"
state_dir = "state"

[[application]]
name = "keep"
min_kpu = 1
max_kpu = 8
evaluation_interval_secs = 1
update_poll_secs = 1
grace_period_secs = 2

[[application.metric]]
id = "cpu"
namespace = "AWS/KinesisAnalytics"
metric_name = "containerCPUUtilization"
dimensions = { Application = "keep" }
statistic = "Average"
period_secs = 10

[application.policy]
plugin = "policy"
EOF

"$bin" emulate --scenario "$scenario" --listen 127.0.0.1:0 --speed 20 \
    > "$dir/emulator.out" 2> "$dir/emulator.log" &
pids+=($!)
for _ in $(seq 300); do
    grep -q "listening on" "$dir/emulator.out" 2>/dev/null && break
    sleep 0.1
done
endpoint="$(sed -n 's/^flinkscale emulator listening on //p' "$dir/emulator.out" | head -1)"
[ -n "$endpoint" ] || { echo "the emulator did not start" >&2; exit 1; }

(
    cd "$dir"
    for key in $(env | sed -n 's/^\(AWS_[A-Z_]*\)=.*/\1/p'); do unset "$key"; done
    AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 \
        AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=not-real \
        AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE="$dir/none" \
        AWS_SHARED_CREDENTIALS_FILE="$dir/none" RUST_LOG=info \
        exec "$bin" --log-format json run --config "$dir/agent.toml"
) > "$dir/agent.log" 2>&1 &
pids+=($!)

evaluations() { grep -c '"Evaluated."' "$dir/agent.log" 2>/dev/null || true; }
at_least() { [ "$(evaluations)" -ge "$1" ]; }
wait_for() { # LABEL, then a command that succeeds when done
    local label="$1"
    shift
    for _ in $(seq 1200); do
        "$@" && return 0
        sleep 0.1
    done
    echo "timed out waiting for $label; agent log:" >&2
    tail -20 "$dir/agent.log" >&2
    exit 1
}
wait_for "ten evaluations" at_least 10
cp "$new" "$dir/plugins/policy.staged"
printf '\x00\x0b\x0a%s' "$(date +%H%M%S%N | cut -c1-10)" >> "$dir/plugins/policy.staged"
dropped_ms=$(date +%s%3N)
mv "$dir/plugins/policy.staged" "$dir/plugins/policy.wasm"
wait_for "the reload" grep -q '"Plugin reload' "$dir/agent.log"
after=$(evaluations)
wait_for "three more evaluations" at_least $((after + 3))

python3 - "$dir/agent.log" "$dropped_ms" <<'EOF'
import json, sys
from datetime import datetime

log, dropped_ms = sys.argv[1], int(sys.argv[2])
def ms(line):
    stamp = line["timestamp"].replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp() * 1000
evaluated, reload_ms, noticed_ms, outcome = [], None, None, ""
for text in open(log):
    try:
        line = json.loads(text)
    except ValueError:
        continue
    fields = line.get("fields", line)
    message = fields.get("message", "")
    if message == "Evaluated." and fields.get("application") == "keep":
        evaluated.append(ms(line))
    elif message.startswith("Plugin reload") and reload_ms is None:
        reload_ms, outcome = ms(line), message
    elif message.startswith("Plugin file changed") and noticed_ms is None:
        noticed_ms = ms(line)
before = [b - a for a, b in zip(evaluated, evaluated[1:]) if b < dropped_ms]
around = [e for e in evaluated if e >= dropped_ms]
last = [e for e in evaluated if e <= dropped_ms][-1:]
after_reload = [e for e in around if e > reload_ms][:3]
window = last + [e for e in around if e <= (after_reload or around)[-1]]
gaps = [b - a for a, b in zip(window, window[1:])]
before = before[1:]  # the first gap includes the start
print(f"gaps before the drop-in: median {sorted(before)[len(before) // 2]:.0f} ms, "
      f"max {max(before):.0f} ms ({len(before)} gaps)")
print(f"longest gap from the drop-in to 3 evaluations after the reload: {max(gaps):.0f} ms "
      f"(gaps {', '.join(f'{g:.0f}' for g in gaps)} ms)")
if noticed_ms is not None:
    print(f"noticed {noticed_ms - dropped_ms:.0f} ms after the drop-in; ", end="")
print(f"{outcome!r} logged {reload_ms - dropped_ms:.0f} ms after the drop-in")
EOF
