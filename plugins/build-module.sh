# Sourced by plugins/python/build.sh and plugins/js/build.sh, from the root
# of the checkout or of the kit (`flinkscale plugin sdk DIR`): the part of
# their command line the two languages share.

# A Rust backtrace from the build tools (componentize-py is Rust) would
# follow a plugin's build error with dozens of frames that bury it.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
#
#   module_and_world LANG EXT INTERPRETER_PATTERN [MODULE [WORLD]]
#
# MODULE (default: step) is a module of plugins/LANG/, without .EXT, or the
# path of a .EXT file elsewhere: relative to `$caller` (the folder the
# script was run in, when the script sets it), else to the root. WORLD is `scaling-policy` or
# `metric-interpreter`; when left out, a source with a line matching
# INTERPRETER_PATTERN (grep -E: its import of the interpreter helper) is an
# interpreter, any other a policy. Sets source_file, module_dir (the folder
# to build from), module (the name, without .EXT), source_path (the source's
# absolute path) and world; on a bad argument says what is valid and exits 2.
module_and_world() {
    local lang="$1" ext="$2" interpreter="$3"
    module="${4:-step}"
    case "$module" in
        *."$ext")
            source_file="$module"
            if [[ "$module" != /* ]] && [ -n "${caller:-}" ] && [ -f "$caller/$module" ]; then
                source_file="$caller/$module"
            fi
            module_dir="$(dirname "$source_file")"
            module="$(basename "$module" ".$ext")"
            ;;
        *)
            source_file="plugins/$lang/$module.$ext"
            module_dir="plugins/$lang"
            ;;
    esac
    if [ ! -f "$source_file" ]; then
        echo "build.sh: no module $source_file (MODULE is a file in plugins/$lang/, without .$ext, or a .$ext file's path, relative to the folder you run in)" >&2
        exit 2
    fi
    source_path="$(realpath "$source_file")"
    if [ -n "${5:-}" ]; then
        world="$5"
    elif grep -qE "$interpreter" "$source_file"; then
        world=metric-interpreter
    else
        world=scaling-policy
    fi
    case "$world" in
        scaling-policy | metric-interpreter) ;;
        *)
            echo "build.sh: unknown world \`$world\` (valid: scaling-policy, metric-interpreter)" >&2
            exit 2
            ;;
    esac
}

# Whether the component OUT was built from $source_path for $world: two
# modules of the same name (an author's `step.py` and the shipped one)
# build to the same file, and one must not pass for the other as "up to
# date"; nor must a module built for the other world (a policy built as an
# interpreter by mistake would otherwise stay so until a source changed).
# build_from records both, after a build.
built_from_source() {
    [ -f "$1.source" ] && [ "$(cat "$1.source")" = "$(printf '%s\n%s' "$source_path" "$world")" ]
}

build_from() {
    printf '%s\n%s\n' "$source_path" "$world" >"$1.source"
}

# Warns when $source_file does not seem to export what $world calls (a
# module built for the other world, or one that never defines its export):
# the build succeeds, and the component traps at its first call, with a
# message that names no export. PATTERN is grep -E for the export line;
# WANT the name, for the message.
warn_without_export() {
    local pattern="$1" want="$2"
    if ! grep -qE "$pattern" "$source_file"; then
        echo "warning: $source_file does not seem to define \`$want\`, which the $world world calls: the component will fail at its first call (name the other world, or define it)" >&2
    fi
}
