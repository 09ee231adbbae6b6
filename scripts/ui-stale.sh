#!/usr/bin/env bash
# ui-stale.sh fails when the committed dashboard build (examples/dashboard/ui/dist)
# differs from what the committed sources build to: run `make ui` and commit.
set -euo pipefail
ui=examples/dashboard/ui
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$ui" && npm run --silent build -- --outDir "$tmp/dist" --emptyOutDir >/dev/null)
if ! diff -r "$ui/dist" "$tmp/dist" >/dev/null; then
  echo "examples/dashboard/ui/dist is stale: run 'make ui' and commit the result" >&2
  diff -rq "$ui/dist" "$tmp/dist" >&2 || true
  exit 1
fi
echo "ui: committed build matches the sources"
