#!/usr/bin/env bash
# Vets and tests each adapter module (adapters/mcp, adapters/langchaingo).
# Each is its own Go module, so the root module's ./... does not reach them.
# Dependencies come from the Go module proxy (GOPROXY); go.sum pins them.
# The MCP adapter's Redis test starts a redis-server (internal/redistest);
# `go test -short` skips it.
set -euo pipefail
cd "$(dirname "$0")"
# Each module as its users build it, from its own go.mod and go.sum; the
# go.work in each directory is for commands typed there (see its comment).
export GOWORK=off

status=0
for mod in mcp langchaingo; do
  echo "adapters: $mod"
  (
    cd "$mod"
    start=$SECONDS
    # The adapters replace the root module with ../.., so a dependency the
    # root adds changes their module graphs too. Say so, and tidy for this
    # run, rather than fail on a missing go.sum line.
    if ! go mod tidy -diff >/dev/null 2>&1; then
      echo "adapters/$mod: go.mod/go.sum are behind the root module; run 'go mod tidy' in adapters/$mod (tidying for this run)"
      go mod tidy
    fi
    unformatted=$(gofmt -l .)
    if [ -n "$unformatted" ]; then
      echo "adapters/$mod: these files need gofmt:"; echo "$unformatted"; exit 1
    fi
    go vet ./...
    go test -race -count=1 ./...
    echo "adapters: $mod done in $((SECONDS - start))s"
  ) || status=1
done
exit $status
