package agentapi

import (
	"encoding/json"
	"fmt"
)

// ConfigEnv is the environment variable that holds the agent's [Config] as
// JSON when the box starts. The server sets it in the box's spec (and the
// runsc runtime reads it back from there to write [ReconfigName] before a
// restore); the agent reads it once and removes every SBX_* variable from
// its environment, so the token reaches no process it starts.
const ConfigEnv = "SBX_AGENT_CONFIG"

// DefaultUser is the user processes run as when neither the request nor
// [Config.DefaultUser] names one.
const DefaultUser = "user"

// Config is the agent's configuration. The server writes it with
// [Config.Encode], into [ConfigEnv] at start, as the body of a POST to
// [ConfigurePath] (a warm sandbox handed to a create), and into
// [ReconfigName] before a restore; the agent reads it with [ParseConfig].
//
// The JSON field names and their order are the wire format older agents
// read: they never change.
type Config struct {
	// AccessToken must be sent by every caller in the [AccessTokenHeader]
	// header (all routes but [HealthPath]). It is required: an agent
	// without a token refuses to start rather than serve an open data
	// plane.
	AccessToken string `json:"accessToken"`
	// EnvVars are set in every process the agent starts, after the defaults
	// and before the variables of the request.
	EnvVars map[string]string `json:"envVars"`
	// DefaultUser runs processes when a request names no user. Default
	// [DefaultUser].
	DefaultUser string `json:"defaultUser"`
	// DefaultWorkdir is the working directory of processes whose request
	// names none (the template's working directory). Empty, relative or
	// not a directory: the user's home.
	DefaultWorkdir string `json:"defaultWorkdir,omitempty"`
	// SandboxID is exported to processes as E2B_SANDBOX_ID.
	SandboxID string `json:"sandboxID"`
	// TemplateID is exported to processes as E2B_TEMPLATE_ID.
	TemplateID string `json:"templateID"`
}

// Encode returns c's JSON form, as the agent reads it. Equal
// configurations encode to equal bytes, so the server can tell whether an
// agent needs a new one by comparing them.
func (c Config) Encode() []byte {
	// A struct of strings and a map of strings always encodes.
	b, _ := json.Marshal(c)
	return b
}

// ParseConfig decodes the JSON form of a [Config] and applies its defaults
// (see [Config.WithDefaults]).
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("parse agent config: %w", err)
	}
	return cfg.WithDefaults(), nil
}

// WithDefaults returns c with its unset fields given their defaults.
func (c Config) WithDefaults() Config {
	if c.DefaultUser == "" {
		c.DefaultUser = DefaultUser
	}
	return c
}
