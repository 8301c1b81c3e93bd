#!/usr/bin/env bash
# `make lock`: regenerate requirements.lock and requirements-dev.lock (every package pinned, with hashes)
# from the direct pins in requirements.txt / requirements-dev.txt. pip-tools runs from a throw-away venv,
# never the project's. Change a pin in requirements*.txt, run this, commit the four files together.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
PIP_TOOLS_VERSION=7.6.2
tools=$(mktemp -d /tmp/violet-lock-XXXXXX)
trap 'rm -rf "$tools"' EXIT

"$PYTHON" -m venv "$tools"
"$tools/bin/pip" install --quiet "pip-tools==${PIP_TOOLS_VERSION}"
for name in requirements requirements-dev; do
  # --no-strip-extras: pip's hash-checking mode needs e.g. coverage[toml] pinned as such (pytest-cov asks for it).
  # A machine's local wheel directories and extra indexes must not leak into the lock file.
  env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
    "$tools/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --no-strip-extras \
    --no-emit-index-url --no-emit-find-links -o "${name}.lock" "${name}.txt"
done
echo "requirements.lock and requirements-dev.lock written"
