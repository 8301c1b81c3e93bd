#!/usr/bin/env bash
# Prints the modules mypy reports errors in when the baseline is switched off: the list that belongs
# in the "mypy baseline" overrides block of pyproject.toml (ignore_errors = true), which only shrinks.
#
#   bash scripts/mypy-baseline.sh            # one module name per line
#   bash scripts/mypy-baseline.sh --toml     # the whole block, ready to replace the one in pyproject.toml
#   bash scripts/mypy-baseline.sh --toml refunds payments   # only these packages
#
# Packages default to the apps `make typecheck` checks, skipping any that does not exist (yet).
# The block is found by its marker lines; everything else in pyproject.toml is used as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

toml=0
if [ "${1:-}" = "--toml" ]; then
    toml=1
    shift
fi

packages=()
if [ "$#" -gt 0 ]; then
    packages=("$@")
else
    # Keep in step with MYPY_PACKAGES in the Makefile.
    for app in violet_refunds platforms refunds payments notifications stripe_sandbox portal; do
        [ -d "$app" ] && packages+=("$app")
    done
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed '/^# mypy-baseline: begin/,/^# mypy-baseline: end/d' pyproject.toml >"$work/pyproject.toml"

status=0
"$PY" -m mypy --config-file "$work/pyproject.toml" --cache-dir "$work/cache" --no-error-summary \
    "${packages[@]}" >"$work/out.txt" 2>&1 || status=$?
if [ "$status" -gt 1 ]; then
    # 1 = type errors (expected); anything else is mypy itself failing.
    cat "$work/out.txt" >&2
    exit "$status"
fi

modules=$(grep -oE '^[^: ]+\.pyi?:[0-9]+: error:' "$work/out.txt" |
    sed -E 's/\.pyi?:[0-9]+: error:$//; s#/__init__$##; s#/#.#g' | sort -u || true)

if [ "$toml" -eq 0 ]; then
    [ -n "$modules" ] && printf '%s\n' "$modules"
    exit 0
fi

echo "# mypy-baseline: begin"
echo "# The baseline to shrink: modules that still have mypy errors (regenerate with"
echo "# \`bash scripts/mypy-baseline.sh --toml\`). Fix a module, then delete its line; never add one."
echo "[[tool.mypy.overrides]]"
echo "module = ["
if [ -n "$modules" ]; then
    printf '    "%s",\n' $modules
fi
echo "]"
echo "ignore_errors = true"
echo "# mypy-baseline: end"
