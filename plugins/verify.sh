#!/usr/bin/env bash
# Checks that each given .wasm is a component exporting the Sluice `interceptor` world's
# functions (describe, configure, on-request, on-response, on-produce, on-fetch) and prints its
# size; refuses components that need component-model async (the gateway runs without it). Needs
# wasm-tools (`make plugins` installs it from PyPI when missing).
set -euo pipefail
status=0
for wasm in "$@"; do
  if ! wit=$(wasm-tools component wit "$wasm" 2>&1); then
    echo "FAIL $wasm: not a component: $wit" >&2
    status=1
    continue
  fi
  if ! err=$(wasm-tools validate --features=-cm-async "$wasm" 2>&1); then
    echo "FAIL $wasm: invalid without component-model async: $err" >&2
    status=1
    continue
  fi
  missing=""
  for f in describe configure on-request on-response on-produce on-fetch; do
    grep -qE "^\s*export $f: func" <<<"$wit" || missing="$missing $f"
  done
  if [[ -n "$missing" ]]; then
    echo "FAIL $wasm: missing exports:$missing" >&2
    status=1
  else
    printf 'ok   %-36s %9d bytes\n' "$wasm" "$(stat -c %s "$wasm")"
  fi
done
exit $status
