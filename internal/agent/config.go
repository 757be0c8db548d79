package agent

import (
	"encoding/json"
	"fmt"
)

// Config is the agent's configuration. The runtime passes it as JSON in the
// SBX_AGENT_CONFIG environment variable.
type Config struct {
	// AccessToken must be sent by every caller in the X-Access-Token header
	// (all routes but /health). It is required: an agent without a token
	// refuses to start rather than serve an open data plane.
	AccessToken string `json:"accessToken"`
	// EnvVars are set in every process the agent starts, after the defaults
	// and before the variables of the request.
	EnvVars map[string]string `json:"envVars,omitempty"`
	// DefaultUser runs processes when a request names no user. Default "user".
	DefaultUser string `json:"defaultUser,omitempty"`
	// DefaultWorkdir is the working directory of processes whose request
	// names none (the template's working directory). Empty, relative or
	// not a directory: the user's home.
	DefaultWorkdir string `json:"defaultWorkdir,omitempty"`
	// SandboxID is exported to processes as E2B_SANDBOX_ID.
	SandboxID string `json:"sandboxID,omitempty"`
	// TemplateID is exported to processes as E2B_TEMPLATE_ID.
	TemplateID string `json:"templateID,omitempty"`
}

// DefaultUser is the user processes run as when neither the request nor
// [Config.DefaultUser] names one.
const DefaultUser = "user"

// ParseConfig decodes the JSON form of a [Config] and applies defaults.
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("parse agent config: %w", err)
	}
	return cfg.withDefaults(), nil
}

func (c Config) withDefaults() Config {
	if c.DefaultUser == "" {
		c.DefaultUser = DefaultUser
	}
	return c
}
