#!/usr/bin/env bash
# mypy over the three packages as they import (trio_codex.actors, .runtime,
# .transports), with the settings in pyproject's [tool.mypy]. The folders
# install under trio_codex only through setuptools' package-dir mapping,
# which mypy cannot follow, so a folder of symlinks inside .mypy_cache stands
# in for the package; mypy runs from there so that its cached errors keep
# their paths (trio_codex/actors/...). Exits non-zero on any error.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root="$repo/.mypy_cache/src"
mkdir -p "$root/trio_codex"
for pkg in actors runtime transports; do
    ln -sfn "$repo/$pkg" "$root/trio_codex/$pkg"
done
cd "$root"
MYPYPATH="$root" exec "$repo/.venv/bin/mypy" \
    --config-file "$repo/pyproject.toml" \
    --cache-dir "$repo/.mypy_cache" \
    --python-executable "$repo/.venv/bin/python" \
    -p trio_codex.actors -p trio_codex.runtime -p trio_codex.transports "$@"
