#!/usr/bin/env bash
# The mini program's TypeScript types, from the OpenAPI document the service serves.
#   scripts/ts_client.sh generate   rewrite miniprogram_stub/ts/src/schema.d.ts (`make ts-client`)
#   scripts/ts_client.sh check      CI: fail if the checked-in types differ from the document,
#                                   compile the client and its example with tsc, then run them
#                                   under Node against a live server (scripts/ts_runtime_check.py)
set -euo pipefail
cd "$(dirname "$0")/.."
TS=miniprogram_stub/ts
TYPES=$TS/src/schema.d.ts
mode=${1:-}
case "$mode" in generate|check) ;; *) echo "usage: $0 generate|check" >&2; exit 2 ;; esac

# npm ci only when the lock changed since the last install (it takes seconds, not minutes).
if ! cmp -s "$TS/package-lock.json" "$TS/node_modules/.package-lock.json.ci" 2>/dev/null; then
  (cd "$TS" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$TS/package-lock.json" "$TS/node_modules/.package-lock.json.ci"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.venv/bin/python scripts/export_openapi.py "$tmp/openapi.json"
# --default-non-nullable false: a field with a default may be left out of a request body.
# --alphabetize: the same document always gives the same file.
(cd "$TS" && npx --no-install openapi-typescript "$tmp/openapi.json" --output "$tmp/schema.d.ts" \
  --default-non-nullable false --alphabetize --root-types --root-types-no-schema-prefix \
)

if [ "$mode" = generate ]; then
  cp "$tmp/schema.d.ts" "$TYPES"
  echo "wrote $TYPES"
elif ! diff -u "$TYPES" "$tmp/schema.d.ts" > "$tmp/drift.diff"; then
  head -n 60 "$tmp/drift.diff"
  echo "$TYPES is out of date with the OpenAPI document: run \`make ts-client\` and commit it" >&2
  exit 1
else
  echo "$TYPES matches the OpenAPI document"
fi
(cd "$TS" && npx --no-install tsc --noEmit -p tsconfig.json)
echo "tsc: the typed client and its example compile against the document"
if [ "$mode" = check ]; then
  .venv/bin/python scripts/ts_runtime_check.py
fi
