// Command sbx-agent is the agent that runs as PID 1 in every sbx sandbox and
// serves E2B's envd protocol (see package internal/agent).
//
// Usage:
//
//	sbx-agent [-listen unix:/path | -listen tcp:127.0.0.1:0]
//	sbx-agent code-interpreter [-listen :49999] (see runCodeInterpreter)
//
// Without -listen it serves on the listening socket inherited as file
// descriptor 3. With -listen unix:/path, SIGUSR1 and SIGUSR2 take the
// socket away and give it back around a checkpoint (see serveQuiescable and
// the quiesce protocol in package agentapi). Its configuration is JSON in
// SBX_AGENT_CONFIG (see agentapi.Config); every SBX_* variable is removed
// from its environment once read. SIGTERM or SIGINT stops every process (SIGTERM, then SIGKILL after
// two seconds) and exits 0.
//
// Exit codes: 0 after a stop by signal, 1 on a configuration or listener
// error, 2 on bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/agent"
	"github.com/sbxdev/sbx/internal/agentapi"
)

var listenFlag = flag.String("listen", "", "address to serve on, unix:/path or tcp:host:port (default: the listener on fd 3)")

func main() {
	if len(os.Args) > 1 && os.Args[1] == "code-interpreter" {
		os.Exit(runCodeInterpreter(os.Args[2:]))
	}
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
	flag.Parse()
	listen := listenFlag

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
	if path, ok := strings.CutPrefix(*listen, "unix:"); ok {
		return serveQuiescable(ctx, a, ln, path, log)
	}
	if err := a.Serve(ctx, ln); err != nil {
		log.Error("agent failed", "err", err)
		return 1
	}
	log.Info("agent stopped")
	return 0
}

// serveQuiescable serves on ln, a socket the agent bound at path, and lets
// the runtime take it away and give it back: gVisor cannot checkpoint a box
// holding a socket bound on the host, which is how the agent is reached
// under runsc. It is the agent's side of the quiesce protocol (see package
// agentapi):
//
//   - agentapi.QuiesceSignal: close the listener and every connection
//     (processes keep running), then write the quiesced marker in <dir>.
//   - agentapi.WakeSignal, or under gVisor the end of the checkpoint taken
//     while quiesced (the marker then says so): if <dir>/agent.json
//     (agentapi.ReconfigName) exists, take it as the new configuration (a
//     restored snapshot is a new sandbox, with its own token) and remove
//     it; then bind path again and serve. WakeSignal is ignored while
//     serving, but for taking a configuration left in agent.json.
//
// <dir> is path's directory, private to the box and the host.
func serveQuiescable(ctx context.Context, a *agent.Agent, ln net.Listener, path string, log *slog.Logger) int {
	dir := filepath.Dir(path)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, agentapi.QuiesceSignal, agentapi.WakeSignal)
	defer signal.Stop(sigs)
	for {
		quiesce := make(chan struct{})
		done := make(chan error, 1)
		var quiesced bool
		go func() {
			q, err := a.ServeUntil(ctx, ln, quiesce)
			quiesced = q
			done <- err
		}()
	serving:
		for {
			select {
			case err := <-done:
				if err != nil {
					log.Error("agent failed", "err", err)
					return 1
				}
				if !quiesced {
					log.Info("agent stopped")
					return 0
				}
				break serving
			case sig := <-sigs:
				switch {
				case sig == agentapi.QuiesceSignal && quiesce != nil:
					close(quiesce)
					quiesce = nil
				case sig == agentapi.WakeSignal:
					// Already listening (a restore raced ahead):
					// still take a configuration left for us.
					if err := reconfigure(a, filepath.Join(dir, agentapi.ReconfigName)); err != nil {
						log.Error("reconfigure", "err", err)
					}
				}
			}
		}
		// Under gVisor the end of the checkpoint that follows is an
		// event the agent can wait on itself; the marker says so, and the
		// runtime then sends no WakeSignal.
		woke, armed := awaitCheckpoint(log)
		if err := agentapi.WriteQuiesced(dir, armed); err != nil {
			log.Error("mark quiesced", "err", err)
		}
		// Wait to be given the socket back.
		for resumed := false; !resumed; {
			select {
			case <-ctx.Done():
				log.Info("agent stopped while quiesced")
				return 0
			case how := <-woke:
				log.Info("agent listening again: the checkpoint is over", "result", how)
				resumed = true
			case sig := <-sigs:
				if sig == agentapi.QuiesceSignal {
					if err := agentapi.WriteQuiesced(dir, armed); err != nil {
						log.Error("mark quiesced", "err", err)
					}
					continue
				}
				log.Info("agent listening again: told so by SIGUSR2")
				resumed = true
			}
		}
		if err := reconfigure(a, filepath.Join(dir, agentapi.ReconfigName)); err != nil {
			log.Error("reconfigure", "err", err)
		}
		os.Remove(filepath.Join(dir, agentapi.QuiescedName))
		var err error
		if ln, err = listener(*listenFlag); err != nil {
			log.Error("no listener", "err", err)
			return 1
		}
	}
}

// checkpointFile is gVisor's checkpoint event: a read on it returns once the
// first checkpoint after the open is over, with "restore" in a box restored
// from its image, "resume" in the box it was taken of (--leave-running) and
// "error" when it failed (the box runs on).
const checkpointFile = "/proc/gvisor/checkpoint"

// awaitCheckpoint arms a wait for the end of the next checkpoint: the
// returned channel receives its result. armed is false outside gVisor (or
// on a gVisor without the event), where only WakeSignal wakes the agent. The
// file is opened before the quiesced marker is written, so the checkpoint
// waited for is the one the runtime takes after reading the marker. A
// WakeSignal that comes first leaves the goroutine waiting for that
// checkpoint; its result then goes nowhere.
func awaitCheckpoint(log *slog.Logger) (woke <-chan string, armed bool) {
	f, err := os.Open(checkpointFile)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("cannot wait for the checkpoint's end; SIGUSR2 will", "err", err)
		}
		return nil, false
	}
	ch := make(chan string, 1)
	go func() {
		defer f.Close()
		b, err := io.ReadAll(f)
		if err != nil {
			log.Warn("waiting for the checkpoint's end", "err", err)
		}
		ch <- strings.TrimSpace(string(b))
	}()
	return ch, true
}

// reconfigure applies the configuration in file, if there is one, and
// removes the file: it holds the access token.
func reconfigure(a *agent.Agent, file string) error {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	os.Remove(file)
	if err != nil {
		return err
	}
	cfg, err := agentapi.ParseConfig(b)
	if err != nil {
		return err
	}
	return a.Reconfigure(cfg)
}

// configFromEnv reads the configuration, then removes every SBX_* variable
// from the agent's environment: the access token must never reach a process
// the agent starts or anything that reads /proc/1/environ.
func configFromEnv() (agentapi.Config, error) {
	raw, ok := os.LookupEnv(agentapi.ConfigEnv)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "SBX_") {
			os.Unsetenv(k)
		}
	}
	if !ok {
		return agentapi.Config{}, fmt.Errorf("%s is not set", agentapi.ConfigEnv)
	}
	return agentapi.ParseConfig([]byte(raw))
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
