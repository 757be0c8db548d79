// Package gen holds the Go code generated from proto/: the envd-compatible
// process and filesystem services that the sbx agent serves and the server and
// the Go SDK call. The code is committed; regenerate it with
//
//	go generate ./gen
//
// which needs protoc (Debian's protobuf-compiler) and, to re-derive proto/ from
// the e2b npm package, tests/e2b-js/node_modules (npm ci there).
package gen

//go:generate ./generate.sh
