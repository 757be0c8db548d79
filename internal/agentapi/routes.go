package agentapi

// EnvdVersion is the envd protocol version the agent implements. The server
// reports it to SDKs (as envdVersion), which enable features by comparing
// it; it changes with the agent, not with the server's API. The e2b SDK
// gates file metadata on 0.6.2, watch events with entries on 0.6.3 and
// watching network mounts on 0.6.4; the agent serves all three.
const EnvdVersion = "0.6.4"

// AccessTokenHeader carries the sandbox's access token ([Config.AccessToken])
// on every request to the agent but [HealthPath]: the server's own calls
// set it, and so do SDKs on the data-plane requests the server proxies.
const AccessTokenHeader = "X-Access-Token"

// HealthPath is the agent's unauthenticated liveness route: a GET answers
// 204 once the agent serves. The server calls it after starting or
// restoring a box.
const HealthPath = "/health"

// PrivatePrefix starts the routes that are sbx's, not the sandbox user's:
// the server's proxy never forwards a request for one to the agent.
const PrivatePrefix = "/.sbx/"

// ConfigurePath is where the server gives a running agent a new
// configuration: a POST whose body is an encoded [Config] (as in
// [ConfigEnv]), with the agent's current token in [AccessTokenHeader],
// answered 204, or 400 for a configuration the agent refuses. The server
// calls it when a sandbox of the warm pool is handed to a create with its
// environment variables.
const ConfigurePath = PrivatePrefix + "configure"

// TunnelPath is the route of the port tunnel (see package tunnel, which
// dials it for the server and describes the exchange); the agent serves it.
const TunnelPath = "/sbx/tunnel"

// TunnelProtocol is the Upgrade token of the port tunnel.
const TunnelProtocol = "sbx-tunnel"
