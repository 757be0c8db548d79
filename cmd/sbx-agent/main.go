// Command sbx-agent is the agent that runs as PID 1 in every sbx sandbox and
// serves E2B's envd protocol (see package internal/agent).
//
// Usage:
//
//	sbx-agent [-listen unix:/path | -listen tcp:127.0.0.1:0]
//
// Without -listen it serves on the listening socket inherited as file
// descriptor 3. Its configuration is JSON in SBX_AGENT_CONFIG (see
// agent.Config); every SBX_* variable is removed from its environment once
// read. SIGTERM or SIGINT stops every process (SIGTERM, then SIGKILL after
// two seconds) and exits 0.
//
// Exit codes: 0 after a stop by signal, 1 on a configuration or listener
// error, 2 on bad flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/agent"
)

// ConfigEnv names the variable holding the agent's JSON configuration.
const ConfigEnv = "SBX_AGENT_CONFIG"

func main() {
	os.Exit(run())
}

func run() int {
	// Threat: code running as root inside the sandbox attaching to the
	// agent with ptrace (stopping it, or reading its memory and the access
	// token through /proc/1/mem or /proc/1/environ). A non-dumpable process
	// can only be traced with CAP_SYS_PTRACE, which no sandbox process has.
	// Processes the agent starts become dumpable again at exec.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "sbx-agent: prctl(PR_SET_DUMPABLE):", err)
		return 1
	}
	listen := flag.String("listen", "", "address to serve on, unix:/path or tcp:host:port (default: the listener on fd 3)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := configFromEnv()
	if err != nil {
		log.Error("bad configuration", "err", err)
		return 1
	}
	ln, err := listener(*listen)
	if err != nil {
		log.Error("no listener", "err", err)
		return 1
	}
	a, err := agent.New(cfg, log.With("sandbox_id", cfg.SandboxID))
	if err != nil {
		log.Error("cannot start agent", "err", err)
		return 1
	}
	defer a.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// After the first signal, a second one gets the default action: outside
	// a sandbox it ends a stuck stop at once (PID 1 is immune to it anyway).
	context.AfterFunc(ctx, stop)
	if err := a.Serve(ctx, ln); err != nil {
		log.Error("agent failed", "err", err)
		return 1
	}
	log.Info("agent stopped")
	return 0
}

// configFromEnv reads the configuration, then removes every SBX_* variable
// from the agent's environment: the access token must never reach a process
// the agent starts or anything that reads /proc/1/environ.
func configFromEnv() (agent.Config, error) {
	raw, ok := os.LookupEnv(ConfigEnv)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "SBX_") {
			os.Unsetenv(k)
		}
	}
	if !ok {
		return agent.Config{}, fmt.Errorf("%s is not set", ConfigEnv)
	}
	return agent.ParseConfig([]byte(raw))
}

// listener returns the listener named by addr, or the one inherited as fd 3.
func listener(addr string) (net.Listener, error) {
	if addr == "" {
		f := os.NewFile(3, "listener")
		if f == nil {
			return nil, fmt.Errorf("no file descriptor 3")
		}
		ln, err := net.FileListener(f) // a close-on-exec duplicate
		// Close the original so processes the agent starts cannot inherit it.
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("listen on fd 3: %w", err)
		}
		return ln, nil
	}
	network, address, ok := strings.Cut(addr, ":")
	if !ok || (network != "unix" && network != "tcp") {
		return nil, fmt.Errorf("bad -listen %q: want unix:/path or tcp:host:port", addr)
	}
	if network == "unix" {
		_ = os.Remove(address) // a stale socket from an earlier run
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}
