#!/usr/bin/env bash
# test.sh runs sbx's whole test suite (as root): it installs what the tests
# need (scripts/setup.sh, the e2b and playwright-core npm packages, the
# dashboard's assets), then runs every Go test,
# which includes the end-to-end suites against real `sbx serve` processes and
# the e2b JavaScript SDK suite, with sandboxes on runc; then the end-to-end
# package (Go SDK, CLI, files, bad input, escapes, lifecycle, e2b JS) once
# more with sandboxes on gVisor (SBX_TEST_RUNTIME=runsc), so everything that
# works on runc is proven on runsc too.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PATH:/usr/local/go/bin"
(cd tests/e2b-js && npm ci --no-audit --no-fund --loglevel=error)
(cd tests/dashboard && npm ci --no-audit --no-fund --loglevel=error)
./scripts/build-dashboard.sh # the assets sbx embeds, before any go build
go mod tidy -diff   # go.mod and go.sum say exactly what the code imports
go vet ./...
go test -count=1 -timeout 60m "$@" ./...
echo "test.sh: tests/e2e again with sandboxes on runsc (gVisor)" >&2
SBX_TEST_RUNTIME=runsc go test -count=1 -timeout 60m "$@" ./tests/e2e
