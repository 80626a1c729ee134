#!/usr/bin/env bash
# Builds the JavaScript example policy into a WebAssembly component:
#   plugins/js/build.sh [MODULE]   (default: step)
# gives ${CARGO_TARGET_DIR:-target}/polyglot/MODULE-js.wasm.
#
# ComponentizeJS and jco (pinned in package.json and package-lock.json) are
# installed into plugins/js/node_modules, which is reused when present; the
# component is rebuilt only when a source, the WIT or the lock file is newer
# than it. The build needs no WASI: the component imports nothing but the
# contract's `host` interface.
set -euo pipefail
cd "$(dirname "$0")/../.."

module="${1:-step}"
out_dir="${CARGO_TARGET_DIR:-target}/polyglot"
out="$out_dir/$module-js.wasm"
cli=plugins/js/node_modules/@bytecodealliance/componentize-js/src/cli.js

if [ ! -f "$cli" ] || [ plugins/js/package-lock.json -nt plugins/js/node_modules/.package-lock.json ]; then
    (cd plugins/js && npm ci --no-audit --no-fund)
fi

if [ -f "$out" ] && [ -z "$(find plugins/js wit/v0.1.0 -path plugins/js/node_modules -prune -o -newer "$out" \
        \( -name '*.js' -o -name '*.wit' -o -name package-lock.json \) -print -quit)" ]; then
    echo "$out is up to date"
    exit 0
fi
mkdir -p "$out_dir"
start=$(date +%s%N)
node "$cli" "plugins/js/$module.js" --wit wit/v0.1.0 --world-name scaling-policy \
    --disable stdio random clocks http fetch-event -o "$out.tmp"
mv "$out.tmp" "$out"
echo "built $out ($(stat -c %s "$out") bytes) in $(( ($(date +%s%N) - start) / 1000000 )) ms"
