// Package wire holds the JSON bodies of sbx's REST API.
//
// # Overview
//
// sbx serves E2B's control plane (the shapes of E2B's OpenAPI document,
// which the e2b SDKs send and expect) plus sbx's own extensions, some as
// extra fields of E2B's bodies and some under /sbx/v1. Every request and
// response body of those routes is a type of this package: the server
// (internal/api) encodes its responses and decodes its requests with
// them, the Go SDK (package client) does the reverse, and tests decode
// what a real server answers into them.
//
// Field names, omitempty and time formats are the wire format: a change
// here is a change of the API. The golden files in testdata hold one fully
// populated value of each type; `go test ./wire -update` rewrites them.
// docs/api.md says which route takes and returns which type.
//
// Durations are whole seconds and times are RFC 3339 (time.Time's JSON
// form), as E2B's API has them. A pointer field tells "not set" (nil:
// absent, or null where the field has no omitempty) from its zero value.
package wire
