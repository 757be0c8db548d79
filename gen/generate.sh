#!/usr/bin/env bash
# Regenerates proto/ from the e2b npm package's embedded descriptors (when the
# package is installed in tests/e2b-js) and gen/ from proto/.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=tests/e2b-js/node_modules/e2b/dist/index.js
if [ -f "$bundle" ]; then
	go run ./tools/protoextract -bundle "$bundle" -out proto
fi
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$bin/protoc-gen-connect-go" connectrpc.com/connect/cmd/protoc-gen-connect-go
protoc -I proto \
	--plugin=protoc-gen-go="$bin/protoc-gen-go" --go_out=gen --go_opt=module=github.com/sbxdev/sbx/gen \
	--plugin=protoc-gen-connect-go="$bin/protoc-gen-connect-go" --connect-go_out=gen --connect-go_opt=module=github.com/sbxdev/sbx/gen \
	process/process.proto filesystem/filesystem.proto
