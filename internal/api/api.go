// Package api is sbx's control plane: the E2B-shaped REST API (sandboxes,
// templates, builds, keys) and sbx's extensions, with its authentication by
// API key and its cross-origin check. Errors are answered through package
// errhttp. Data-plane requests (those addressed to a sandbox) never reach
// it: internal/server sends them to package proxy.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/build"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/errhttp"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/secret"
	"github.com/sbxdev/sbx/internal/template"
	"github.com/sbxdev/sbx/internal/volume"
	"github.com/sbxdev/sbx/wire"
)

// EnvdVersion is the envd protocol version the sbx agent implements, as
// reported to SDKs (which enable features by comparing it). It is the
// agent's, declared with its contract.
const EnvdVersion = agentapi.EnvdVersion

// maxBodyBytes bounds control-plane request bodies.
const maxBodyBytes = 1 << 20

// TemplateStore is what the API needs of the template store.
type TemplateStore interface {
	List(ctx context.Context) ([]template.Info, error)
	Remove(ctx context.Context, name string) error
}

// Config configures the API.
type Config struct {
	// Domain is returned to SDKs as the sandbox domain (the data plane
	// routes Hosts of {port}-{sandboxID}.{Domain}).
	Domain string
	// Builds runs template builds; nil answers the build routes with 409.
	Builds *build.Builds
	// Builtins builds built-in templates on first use and on request
	// (builtin.go); nil builds none.
	Builtins Builtins
	// Nodes is the fleet's membership (GET /nodes); nil lists none.
	Nodes Nodes
	// Fleet finds sandboxes of every node sharing the store (the whole
	// store, not this node's view), for routes answered from the store
	// whatever node owns the sandbox (its events); nil finds only this
	// node's.
	Fleet FleetSandboxes
	// Drainer drains nodes (POST /nodes/{nodeID}[/drain]); nil refuses
	// those routes (409).
	Drainer Drainer
	// Events holds lifecycle events, webhooks and the audit log; nil
	// answers their routes with 409 and records no audit.
	Events EventStore
	// WebhookURLs checks webhook URLs as they are registered.
	WebhookURLs WebhookURLs
	// Volumes keeps the volumes (volumes.go); nil answers the volume
	// routes with 409.
	Volumes *volume.Manager
	// Secrets keeps team secrets, sealed with SecretKeys (secrets.go);
	// nil answers the secret routes with 409.
	Secrets    SecretStore
	SecretKeys *secret.Keyring
	// Metrics holds the sandboxes' and the team's resource samples.
	Metrics MetricsStore
	// Usage holds what the sandboxes used (usage.go); nil answers GET
	// /sbx/v1/usage with 409.
	Usage UsageStore
	// Observer, when not nil, is told how long lifecycle requests took.
	Observer Observer
	// Sessions keeps the dashboard's sign-in sessions (sessions.go); nil
	// refuses sign-in and ignores session cookies.
	Sessions *Sessions
	// Dashboard serves the dashboard's pages and its own routes; nil
	// answers them 404.
	Dashboard Dashboard
	// RateLimit limits each API key's calls to the control plane
	// (ratelimit.go); CreateRateLimit its sandbox creates and forks
	// besides. Zero rates disable them.
	RateLimit, CreateRateLimit RateLimit
	// Identity serves the workload identity issuer's OpenID Connect
	// discovery document and keys (internal/identity), without
	// authentication; nil serves neither.
	Identity http.Handler
}

// Observer is told of lifecycle requests that succeeded (for Prometheus):
// Operation with the time op ("create", "pause", "resume", "fork") took
// for a sandbox on runtime, Created with when each create began. Its
// methods are called from many goroutines at once and must not block.
type Observer interface {
	Operation(op, runtime string, d time.Duration)
	Created(id, runtime string, start time.Time)
}

func (s *Server) observe(op, runtime string, start time.Time) {
	if o := s.cfg.Observer; o != nil {
		o.Operation(op, runtime, time.Since(start))
	}
}

// Server serves the API. Create it with New.
type Server struct {
	cfg       Config
	mgr       *sandbox.Manager
	keys      *Keys
	templates TemplateStore
	log       *slog.Logger
	ready     atomic.Bool
	mux       *http.ServeMux
	// apiLimit and createLimit are the per-key rate limits (nil: none).
	apiLimit, createLimit *limiter
	// holders are the keys each sandbox's envd token was handed to
	// (revoke.go).
	holders tokenHolders
}

// New returns the API server. It answers 503 until SetReady(true).
func New(cfg Config, mgr *sandbox.Manager, keys *Keys, templates TemplateStore, logger *slog.Logger) *Server {
	s := &Server{cfg: cfg, mgr: mgr, keys: keys, templates: templates, log: logger,
		apiLimit: newLimiter(cfg.RateLimit, nil), createLimit: newLimiter(cfg.CreateRateLimit, nil)}
	s.routes()
	return s
}

// identity serves Config.Identity, or 404 without one.
func (s *Server) identity() http.Handler {
	if s.cfg.Identity != nil {
		return s.cfg.Identity
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		errhttp.WriteMessage(w, http.StatusNotFound, "this server issues no workload identity")
	})
}

// SetReady marks the server ready (templates built, sandboxes re-adopted).
func (s *Server) SetReady(v bool) { s.ready.Store(v) }

// Ready reports whether the server is ready (SetReady). Until then the
// control plane answers 503, and so must whatever serves the data plane
// beside it.
func (s *Server) Ready() bool { return s.ready.Load() }

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /health", s.health)
	// Workload identity's documents (identity.DiscoveryPath, JWKSPath).
	m.Handle("GET /.well-known/openid-configuration", s.identity())
	m.Handle("GET /.well-known/jwks.json", s.identity())

	// Sandboxes (E2B).
	m.Handle("POST /sandboxes", s.auth(s.limitCreates(s.createSandbox)))
	m.Handle("POST /v2/sandboxes", s.auth(s.limitCreates(s.createSandbox)))
	m.Handle("GET /sandboxes", s.auth(s.listSandboxesV1))
	m.Handle("GET /v2/sandboxes", s.auth(s.listSandboxes))
	m.Handle("GET /sandboxes/{id}", s.sandboxRoute(s.getSandbox))
	m.Handle("DELETE /sandboxes/{id}", s.sandboxRoute(s.killSandbox))
	m.Handle("POST /sandboxes/{id}/timeout", s.sandboxRoute(s.setTimeout))
	m.Handle("POST /sandboxes/{id}/refreshes", s.sandboxRoute(s.refresh))
	m.Handle("POST /sandboxes/{id}/connect", s.sandboxRoute(s.connectSandbox))
	m.Handle("POST /v2/sandboxes/{id}/connect", s.sandboxRoute(s.connectSandbox))
	m.Handle("POST /sandboxes/{id}/pause", s.sandboxRoute(s.pauseSandbox))
	m.Handle("POST /sandboxes/{id}/resume", s.sandboxRoute(s.resumeSandbox))
	m.Handle("POST /sandboxes/{id}/snapshots", s.sandboxRoute(s.createSnapshot))
	m.Handle("POST /sandboxes/{id}/fork", s.sandboxRoute(s.limitCreates(s.forkSandbox)))
	m.Handle("GET /snapshots", s.auth(s.listSnapshots))
	m.Handle("PUT /sandboxes/{id}/network", s.sandboxRoute(s.updateNetwork))
	m.Handle("GET /v2/sandboxes/{id}/logs", s.sandboxRoute(s.sandboxLogs))
	m.Handle("GET /sandboxes/{id}/logs", s.sandboxRoute(s.sandboxLogsV1))

	// Volumes (E2B). The content routes take the volume's token, not an
	// API key.
	m.Handle("GET /volumes", s.auth(s.listVolumes))
	m.Handle("POST /volumes", s.auth(s.createVolume))
	m.Handle("GET /volumes/{volumeID}", s.auth(s.getVolume))
	m.Handle("DELETE /volumes/{volumeID}", s.auth(s.destroyVolume))
	m.Handle("GET /volumecontent/{volumeID}/path", s.volumeAuth(s.volumePathStat))
	m.Handle("PATCH /volumecontent/{volumeID}/path", s.volumeAuth(s.volumePathUpdate))
	m.Handle("DELETE /volumecontent/{volumeID}/path", s.volumeAuth(s.volumePathRemove))
	m.Handle("GET /volumecontent/{volumeID}/dir", s.volumeAuth(s.volumeDirList))
	m.Handle("POST /volumecontent/{volumeID}/dir", s.volumeAuth(s.volumeDirMake))
	m.Handle("GET /volumecontent/{volumeID}/file", s.volumeAuth(s.volumeFileRead))
	m.Handle("PUT /volumecontent/{volumeID}/file", s.volumeAuth(s.volumeFileWrite))
	// Secrets (E2B): write-only values, filled in at the egress.
	m.Handle("GET /secrets", s.auth(s.listSecrets))
	m.Handle("POST /secrets", s.auth(s.createSecret))
	m.Handle("GET /secrets/{secretID}", s.auth(s.getSecret))
	m.Handle("POST /secrets/{secretID}", s.auth(s.updateSecret))
	m.Handle("DELETE /secrets/{secretID}", s.auth(s.deleteSecret))
	m.Handle("GET /sandboxes/{id}/metrics", s.sandboxRoute(s.sandboxMetrics))
	m.Handle("GET /sandboxes/metrics", s.auth(s.sandboxesMetrics))

	// Teams (E2B): the key's own.
	m.Handle("GET /teams", s.auth(s.listTeams))
	m.Handle("GET /teams/{teamID}/metrics", s.auth(s.teamMetrics))
	m.Handle("GET /teams/{teamID}/metrics/max", s.auth(s.teamMetricsMax))
	m.Handle("GET /api-keys", s.auth(s.listTeamAPIKeys))
	m.Handle("POST /api-keys", s.auth(s.createTeamAPIKey))
	m.Handle("PATCH /api-keys/{apiKeyID}", s.auth(s.updateTeamAPIKey))
	m.Handle("DELETE /api-keys/{apiKeyID}", s.auth(s.deleteTeamAPIKey))

	// Templates (E2B paths, sbx's store).
	m.Handle("GET /templates", s.auth(s.listTemplates))
	m.Handle("DELETE /templates/{id}", s.auth(s.deleteSnapshotOrTemplate))
	// GET /templates/aliases/{alias} and GET /templates/{templateID}/tags
	// overlap (/templates/aliases/tags), which ServeMux refuses: one
	// route serves both (tags.go).
	m.Handle("GET /templates/{templateID}/{item}", s.auth(s.templateItem))
	// Not templateWrite: the spec gives these routes no 403, so another
	// team's key is told the template is not found (tags.go).
	m.Handle("POST /templates/tags", s.auth(s.assignTemplateTags))
	m.Handle("DELETE /templates/tags", s.auth(s.deleteTemplateTags))
	m.Handle("POST /v3/templates", s.templateWrite(s.requestTemplateBuild))
	m.Handle("GET /templates/{templateID}/files/{hash}", s.templateWrite(s.templateFilesLink))
	m.Handle("POST /v2/templates/{templateID}/builds/{buildID}", s.templateWrite(s.startTemplateBuild))
	m.Handle("GET /templates/{templateID}/builds/{buildID}/status", s.templateWrite(s.templateBuildStatus))

	// sbx extensions.
	m.Handle("GET /nodes", s.admin(s.listNodes))
	m.Handle("GET /nodes/{nodeID}", s.admin(s.getNode))
	m.Handle("DELETE /nodes/{nodeID}", s.admin(s.deleteNode))
	m.Handle("POST /nodes/{nodeID}", s.admin(s.setNodeStatus))
	m.Handle("POST /nodes/{nodeID}/drain", s.admin(s.drainNode))
	m.Handle("GET /sbx/v1/teams", s.admin(s.listTeamInfos))
	m.Handle("POST /sbx/v1/teams", s.admin(s.createTeam))
	m.Handle("GET /sbx/v1/teams/{teamID}", s.admin(s.getTeam))
	m.Handle("PATCH /sbx/v1/teams/{teamID}", s.admin(s.setTeam))
	m.Handle("DELETE /sbx/v1/teams/{teamID}", s.admin(s.deleteTeam))
	m.Handle("GET /sbx/v1/keys", s.admin(s.listKeys))
	m.Handle("POST /sbx/v1/keys", s.admin(s.createKey))
	m.Handle("DELETE /sbx/v1/keys/{id}", s.admin(s.deleteKey))
	m.Handle("POST /sbx/v1/templates/import", s.admin(s.importTemplate))
	m.Handle("GET /sbx/v1/templates/{name}", s.auth(s.inspectTemplate))
	m.Handle("PATCH /sbx/v1/templates/{name}", s.admin(s.setTemplate))
	m.Handle("POST /sbx/v1/templates/builds", s.templateWrite(s.createBuild))
	m.Handle("GET /sbx/v1/templates/builds/{buildID}", s.templateWrite(s.getBuild))
	m.Handle("GET /sbx/v1/templates/builds/{buildID}/logs", s.templateWrite(s.buildLogs))
	m.Handle("POST /sbx/v1/templates/builtin/{name}", s.templateWrite(s.buildBuiltinTemplate))
	// The upload link of E2B builds: authorised by the build's token in
	// the URL, not an API key (see uploadTemplateFiles).
	m.Handle("PUT /sbx/v1/uploads/{buildID}/{hash}", s.wrap(s.uploadTemplateFiles))

	// Lifecycle events and webhooks (E2B), the audit log (sbx).
	m.Handle("GET /events/sandboxes", s.auth(s.listEvents))
	m.Handle("GET /events/sandboxes/{sandboxID}", s.sandboxRoute(s.listEvents))
	m.Handle("POST /events/webhooks", s.auth(s.createWebhook))
	m.Handle("GET /events/webhooks", s.auth(s.listWebhooks))
	m.Handle("GET /events/webhooks/{webhookID}", s.auth(s.getWebhook))
	m.Handle("PATCH /events/webhooks/{webhookID}", s.auth(s.updateWebhook))
	m.Handle("DELETE /events/webhooks/{webhookID}", s.auth(s.deleteWebhook))
	m.Handle("GET /events/webhooks/{webhookID}/deliveries", s.auth(s.webhookDeliveries))
	m.Handle("GET /sbx/v1/audit", s.admin(s.listAudit))
	m.Handle("GET /sbx/v1/usage", s.auth(s.usage))

	// The dashboard (dashboard.go).
	m.Handle("GET /dashboard/", s.wrap(s.dashboardAssets))
	m.Handle("POST /dashboard/api/session", s.wrap(s.signIn))
	m.Handle("GET /dashboard/api/session", s.auth(s.getSession))
	m.Handle("DELETE /dashboard/api/session", s.auth(s.signOut))
	m.Handle("GET /dashboard/api/sandboxes/stream", s.auth(s.dashboardStream))
	m.Handle("GET /dashboard/api/sandboxes/{id}/processes", s.sandboxRoute(s.dashboardSandbox))
	m.Handle("GET /dashboard/api/sandboxes/{id}/terminal", s.sandboxRoute(s.dashboardSandbox))
	m.Handle("GET /dashboard/api/sandboxes/{id}/files", s.sandboxRoute(s.dashboardSandbox))
	m.Handle("DELETE /dashboard/api/sandboxes/{id}/files", s.sandboxRoute(s.dashboardSandbox))
	m.Handle("GET /dashboard/api/sandboxes/{id}/files/content", s.sandboxRoute(s.dashboardSandbox))
	m.Handle("PUT /dashboard/api/sandboxes/{id}/files/content", s.sandboxRoute(s.dashboardSandbox))
	m.Handle("POST /dashboard/api/sandboxes/{id}/files/dir", s.sandboxRoute(s.dashboardSandbox))

	m.Handle("/", s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		return errdefs.New(errdefs.ErrNotFound, "no route for %s %s", r.Method, r.URL.Path)
	}))
	s.mux = m
}

// ServeHTTP serves the control plane. Data-plane requests are sent
// elsewhere before they get here (internal/server).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Browsers attach Origin to cross-origin requests; the control plane is
	// for programs holding an API key, so a page on another origin must
	// not be able to drive it with a key it got hold of.
	a := &auditInfo{}
	r = r.WithContext(context.WithValue(r.Context(), auditKey{}, a))
	sw := &statusWriter{ResponseWriter: w}
	defer func() { s.audit(r, a, sw.status) }()
	if s.cfg.Dashboard != nil && isDashboard(r) {
		s.cfg.Dashboard.SetHeaders(sw.Header())
	}
	if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r.Host) {
		writeError(sw, r, s.log, errdefs.New(errdefs.ErrPermissionDenied, "cross-origin requests are not allowed"))
		return
	}
	if r.URL.Path == "/dashboard" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		http.Redirect(sw, r, "/dashboard/", http.StatusMovedPermanently)
		return
	}
	s.mux.ServeHTTP(sw, r)
}

func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host == host
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, wire.Health{Status: "starting"})
		return
	}
	writeJSON(w, http.StatusOK, wire.Health{Status: "ok"})
}

// wrap turns a handlerFunc into an http.Handler that writes returned errors.
func (s *Server) wrap(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		noteRoute(r)
		if err := h(w, r); err != nil {
			writeError(w, r, s.log, err)
		}
	})
}

type ctxKey struct{}

// auth requires a valid API key (X-API-Key, or Authorization: Bearer).
func (s *Server) auth(h handlerFunc) http.Handler {
	return s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		if !s.ready.Load() {
			return errdefs.New(errdefs.ErrUnavailable, "sbx is starting")
		}
		key := requestKey(r)
		rec, ok := s.keys.Verify(key)
		if key == "" {
			// No key: the dashboard's session cookie, if any (sessions.go).
			var done func()
			var cookie bool
			var err error
			rec, r, done, cookie, err = s.cookieAuth(r)
			defer done()
			if err != nil {
				if a := auditOf(r); a != nil && rec != nil {
					a.key = rec
				}
				return err
			}
			ok = cookie
		}
		if !ok {
			if key == "" {
				return errdefs.New(errdefs.ErrUnauthenticated, "missing API key: set the X-API-Key header")
			}
			return errdefs.New(errdefs.ErrUnauthenticated, "invalid API key")
		}
		if a := auditOf(r); a != nil {
			a.key = rec
		}
		if err := s.limit(s.apiLimit, w, rec.ID, "API calls"); err != nil {
			return err
		}
		// Revoking the key ends its requests still open (a followed
		// build log, say), not only those it would make.
		ctx, done := s.keys.Revocations().Track(r.Context(), rec.ID)
		defer done()
		ctx = context.WithValue(ctx, keyIDKey{}, rec.ID)
		return h(w, r.WithContext(context.WithValue(ctx, ctxKey{}, rec)))
	})
}

// requestKey is the API key r carries (X-API-Key, or Authorization:
// Bearer).
func requestKey(r *http.Request) string {
	key := r.Header.Get("X-API-Key")
	if key == "" {
		if a := r.Header.Get("Authorization"); len(a) > 7 && subtle.ConstantTimeCompare([]byte(a[:7]), []byte("Bearer ")) == 1 {
			key = a[7:]
		}
	}
	return key
}

// admin requires a valid admin API key of the default team: the
// server's admin (teams.go).
func (s *Server) admin(h handlerFunc) http.Handler {
	return s.auth(func(w http.ResponseWriter, r *http.Request) error {
		if !serverAdmin(r) {
			return errdefs.New(errdefs.ErrPermissionDenied, "this needs an admin API key")
		}
		return h(w, r)
	})
}

// decode reads a JSON body of at most maxBodyBytes into v. An empty body is
// allowed when optional.
func decode(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	body := http.MaxBytesReader(w, r.Body, maxBodyBytes)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) && optional {
			return nil
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errdefs.Wrap(errdefs.ErrTooLarge, err, "request body larger than %d bytes", maxBodyBytes)
		}
		if errors.Is(err, io.EOF) {
			return errdefs.New(errdefs.ErrInvalidArgument, "request body is empty; a JSON object is required")
		}
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "malformed JSON body: %s", jsonErrorText(err))
	}
	if dec.More() {
		return errdefs.New(errdefs.ErrInvalidArgument, "malformed JSON body: trailing data after the object")
	}
	return nil
}

// jsonErrorText describes a JSON decoding error without echoing input.
func jsonErrorText(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	}
	return "invalid JSON"
}

// seconds converts an optional count of seconds from a request.
func seconds(field string, v *int64) (*time.Duration, error) {
	if v == nil {
		return nil, nil
	}
	if *v < 0 {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s must not be negative", field)
	}
	if *v > int64((100*365*24*time.Hour)/time.Second) {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s is too large", field)
	}
	d := time.Duration(*v) * time.Second
	return &d, nil
}

func atoiDefault(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, errdefs.New(errdefs.ErrInvalidArgument, "%q is not a valid non-negative number", s)
	}
	return n, nil
}
