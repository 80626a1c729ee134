#!/usr/bin/env bash
# Builds a JavaScript plugin (by default the example policy) into a
# WebAssembly component:
#   plugins/js/build.sh [MODULE [WORLD]]   (default: step)
# gives ${CARGO_TARGET_DIR:-target}/polyglot/MODULE-js.wasm. MODULE is a
# module of plugins/js/, or the path of a .js file elsewhere (the test
# fixtures in tests/fixtures/polyglot/) that imports the helpers as if they
# were beside it (`./flinkscale-interpreter.js`): it is built from a copy
# beside copies of the helpers, as jco resolves imports only under the
# source's folder. WORLD is
# `scaling-policy` or `metric-interpreter`; when left out, a module that
# imports ./flinkscale-interpreter.js is an interpreter, any other a policy.
#
# jco (pinned in package.json and package-lock.json, with the QuickJS
# backend it drives, componentize-qjs) is installed into
# plugins/js/node_modules, which is reused when present; the component is
# rebuilt only when a source, the WIT or the lock file is newer than it.
#
# The engine is QuickJS (`--backend qjs`), not jco's default StarlingMonkey
# (ComponentizeJS): StarlingMonkey lifts a call's arguments into JavaScript
# objects with generated JavaScript that its interpreter runs, and turning a
# typical evaluation's 60 datapoints into objects alone took 130 us a call;
# componentize-qjs lifts them natively. Measured in README.md ("Writing a
# policy in Python / JavaScript"). `--backend-qjs-disable-async` keeps the
# component on the synchronous calling convention the host uses, and
# `--backend-qjs-stub-wasi` replaces every WASI import with a trap, so that
# the component imports nothing but the contract's `host` interface.
set -euo pipefail
# A .py or .js path given is relative to the folder the script is run in.
caller="$PWD"
cd "$(dirname "$0")/../.."

# shellcheck source=plugins/build-module.sh
source plugins/build-module.sh
module_and_world js js "^(import .*|\} *)from ['\"]\./flinkscale-interpreter\.js['\"]" "$@"

if [ "$world" = metric-interpreter ]; then want=interpreter; else want=policy; fi
warn_without_export "export.*\\b$want\\b" "export const $want"

out_dir="${CARGO_TARGET_DIR:-target}/polyglot"
out="$out_dir/$module-js.wasm"
jco=plugins/js/node_modules/@bytecodealliance/jco/dist/jco.js

# jco's bundler needs Node.js 20.19 or a later 20, or 22.12 or later
# (package.json's engines); an older one fails deep in npm or jco.
node_version=$(node --version 2>/dev/null || true)
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a > 22 ? 0 : 1)' 2>/dev/null; then
    echo "error: building a JavaScript plugin needs Node.js 20.19 or a later 20, or 22.12 or later; found ${node_version:-no node on PATH}" >&2
    exit 1
fi

if [ ! -f "$jco" ] || [ plugins/js/package-lock.json -nt plugins/js/node_modules/.package-lock.json ]; then
    if ! command -v npm >/dev/null; then
        echo "error: building a JavaScript plugin installs jco with npm, which is not on PATH (it comes with Node.js; on Debian: apt-get install npm)" >&2
        exit 1
    fi
    (cd plugins/js && npm ci --no-audit --no-fund)
fi

if [ -f "$out" ] && built_from_source "$out" && [ -z "$(find plugins/js "$module_dir" wit/v0.2.0 -path plugins/js/node_modules -prune -o -newer "$out" \
        \( -name '*.js' -o -name '*.wit' -o -name package-lock.json \) -print -quit)" ]; then
    echo "$(realpath "$out") is up to date"
    exit 0
fi
mkdir -p "$out_dir"
if [ "$module_dir" != plugins/js ]; then
    staged="$out_dir/staged-js/$module"
    rm -rf "$staged"
    mkdir -p "$staged"
    cp plugins/js/flinkscale-policy.js plugins/js/flinkscale-interpreter.js "$source_file" "$staged/"
    source_file="$staged/$module.js"
fi
start=$(date +%s%N)
# jco resolves the source against the folder it runs the build in, so every
# path it gets is absolute.
node "$jco" componentize "$(realpath "$source_file")" --wit "$PWD/wit/v0.2.0" \
    --world-name "$world" --backend qjs --backend-qjs-disable-async \
    --backend-qjs-stub-wasi -o "$(realpath -m "$out.tmp")" >/dev/null
mv "$out.tmp" "$out"
build_from "$out"
echo "built $(realpath "$out") ($world, $(stat -c %s "$out") bytes) in $(( ($(date +%s%N) - start) / 1000000 )) ms"
