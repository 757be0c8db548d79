#!/usr/bin/env bash
# context.sh fills deploy/docker/build/ with what the Dockerfile beside it
# copies: sbx and sbx-agent built from this tree, and the runc and runsc that
# scripts/setup.sh installed in /usr/local/lib/sbx (run it first). Then:
#   docker build -t REGISTRY/sbx:TAG deploy/docker
set -euo pipefail
cd "$(dirname "$0")/../.."
out=deploy/docker/build
./scripts/build.sh "$out"
for b in runc runsc; do
	[ -x "/usr/local/lib/sbx/$b" ] || { echo "context: /usr/local/lib/sbx/$b missing: run scripts/setup.sh" >&2; exit 1; }
	install -m 0755 "/usr/local/lib/sbx/$b" "$out/$b"
done
echo "context: $out ready; now: docker build -t REGISTRY/sbx:TAG deploy/docker" >&2
