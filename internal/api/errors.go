package api

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/sbxdev/sbx/internal/errhttp"
)

// writeError writes err as an E2B error body (errhttp.Write: the status of
// its class, its safe message; the cause is logged).
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	errhttp.Write(w, r, log, err)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// handlerFunc is an HTTP handler that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error
