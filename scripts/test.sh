#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the wasm target,
# builds the plugins once, then runs every test (which use those builds).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2
cargo fmt --all -- --check
cargo plugins
cargo test -p flinkscale -p step -p flinkscale-plugin
