#!/usr/bin/env bash
# build.sh builds sbx and sbx-agent, static, into ${1:-bin/}.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
out="${1:-bin}"
mkdir -p "$out"
# Both are static (no cgo): sbx-agent runs inside sandboxes whose libc is
# unknown, and sbx is one file to copy.
CGO_ENABLED=0 go build -trimpath -tags osusergo,netgo -o "$out/sbx" ./cmd/sbx
CGO_ENABLED=0 go build -trimpath -tags osusergo,netgo -o "$out/sbx-agent" ./cmd/sbx-agent
echo "built $out/sbx $out/sbx-agent" >&2
