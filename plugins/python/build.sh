#!/usr/bin/env bash
# Builds a Python plugin (by default the example policy) into a WebAssembly
# component:
#   plugins/python/build.sh [MODULE [WORLD]]   (default: step)
# gives ${CARGO_TARGET_DIR:-target}/polyglot/MODULE-py.wasm. MODULE is a
# module of plugins/python/, or the path of a .py file elsewhere (the test
# fixtures in tests/fixtures/polyglot/), which imports the helpers here. WORLD is
# `scaling-policy` or `metric-interpreter`; when left out, a module that
# imports flinkscale_interpreter is an interpreter, any other a policy.
#
# componentize-py (pinned in requirements.txt) is installed into the
# repository's .venv, which is reused when present; the component is rebuilt
# only when a source, the WIT or the toolchain pin is newer than it.
set -euo pipefail
# A .py or .js path given is relative to the folder the script is run in.
caller="$PWD"
cd "$(dirname "$0")/../.."

# shellcheck source=plugins/build-module.sh
source plugins/build-module.sh
module_and_world python py '^(from|import) flinkscale_interpreter\b' "$@"

if [ "$world" = metric-interpreter ]; then want=Interpreter; else want=Policy; fi
warn_without_export "^(class $want\\b|$want *=)" "class $want"

out_dir="${CARGO_TARGET_DIR:-target}/polyglot"
out="$out_dir/$module-py.wasm"

# A .venv without pip (one `python3 -m venv` left half made on Debian or
# Ubuntu without python3-venv, or one made by uv or with --without-pip) is
# given pip with ensurepip, never removed: it may hold other packages.
venv_help="on Debian or Ubuntu: apt-get install python3-venv"
if [ ! -x .venv/bin/python ] && ! python3 -m venv .venv; then
    echo "error: building a Python plugin needs python3 with its venv module ($venv_help)" >&2
    exit 1
fi
if ! .venv/bin/componentize-py --version 2>/dev/null | grep -qx "componentize-py 0.25.1"; then
    if ! .venv/bin/python -m pip --version >/dev/null 2>&1 \
        && ! .venv/bin/python -m ensurepip >/dev/null 2>&1; then
        echo "error: .venv has no pip and cannot make one with ensurepip ($venv_help)" >&2
        exit 1
    fi
    .venv/bin/python -m pip install -q -r plugins/python/requirements.txt
fi

if [ -f "$out" ] && built_from_source "$out" && [ -z "$(find plugins/python "$module_dir" wit/v0.2.0 -newer "$out" \
        \( -name '*.py' -o -name '*.wit' -o -name requirements.txt \) -print -quit)" ]; then
    echo "$(realpath "$out") is up to date"
    exit 0
fi
mkdir -p "$out_dir"
start=$(date +%s%N)
# The module's own folder first: an author's module named like a shipped
# one (`step`) is the one built, not the shipped one.
.venv/bin/componentize-py -d wit/v0.2.0 -w "$world" \
    componentize -p "$module_dir" -p plugins/python "$module" -o "$out.tmp"
mv "$out.tmp" "$out"
build_from "$out"
echo "built $(realpath "$out") ($world, $(stat -c %s "$out") bytes) in $(( ($(date +%s%N) - start) / 1000000 )) ms"
