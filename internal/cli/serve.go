package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sbxdev/sbx/internal/server"
)

const serveUsage = `usage: sbx serve [flags]

Runs the sbx server: the E2B-compatible API and data-plane proxy on one port.
Every flag can also be set with an environment variable: --data-dir is
SBX_DATA_DIR, --max-timeout is SBX_MAX_TIMEOUT, and so on. On first start the
admin API key is created and printed once (or taken from SBX_API_KEY).

flags:
`

// runServe runs `sbx serve`. The first SIGINT/SIGTERM shuts down gracefully
// (sandboxes keep running); a second one exits at once.
func runServe(ctx context.Context, args []string) int {
	return serveMain(ctx, args, os.Stderr)
}

func serveMain(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, serveUsage)
		fs.PrintDefaults()
	}
	var cfg server.Config
	var logLevel string
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:49982", "address to listen on (loopback by default)")
	fs.StringVar(&cfg.DataDir, "data-dir", "/var/lib/sbx", "directory for state, templates and sandboxes")
	fs.StringVar(&cfg.TemplatesDir, "templates-dir", "", "template directory (default DATA-DIR/templates)")
	fs.StringVar(&cfg.Store, "store", "", "database: a SQLite file `PATH` (default DATA-DIR/sbx.db), or a postgres://USER@HOST/DB URL shared by several nodes (put passwords in SBX_STORE or PGPASSWORD, not on the command line)")
	hostname, _ := os.Hostname()
	fs.StringVar(&cfg.Node, "node", hostname, "this node's name, recorded on its sandboxes; nodes sharing one --store need distinct, stable names")
	fs.StringVar(&cfg.OIDCIssuer, "oidc-issuer", "", "issuer `URL` of sandboxes' workload identity tokens (iam.tokens): where a cloud that trusts sbx as an OIDC provider fetches /.well-known/openid-configuration and /.well-known/jwks.json, which sbx serves (default http(s)://--domain)")
	fs.StringVar(&cfg.Advertise, "advertise", "", "base `URL` other nodes sharing the postgres --store reach this one at (e.g. http://10.0.0.2:49982): joins the fleet, where any node routes requests for any node's sandboxes and places creates; needs --cluster-key (default: none, this node serves its own sandboxes only)")
	fs.IntVar(&cfg.PlacementK, "placement-k", 2, "fleet placement: a create goes to the best of this many live nodes picked at random, scored by free CPU, memory and disk, pooled sandboxes and cached templates (as many as the fleet or more: every node)")
	fs.StringVar(&cfg.ClusterKey, "cluster-key", "", "secret shared by the nodes of a fleet, authenticating the requests they forward to one another (set it in SBX_CLUSTER_KEY, not on the command line)")
	fs.StringVar(&cfg.ObjectStore, "object-store", "", "S3-compatible bucket that servers share templates through: `s3://BUCKET[/PREFIX]?endpoint=http://HOST:PORT[&region=R]`, credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (default: none, templates stay local)")
	fs.StringVar(&cfg.AgentPath, "agent", "", "path of the sbx-agent binary (default: beside sbx, or in PATH)")
	fs.StringVar(&cfg.RuncPath, "runc", "", "path of runc (default /usr/local/lib/sbx/runc)")
	fs.StringVar(&cfg.RunscPath, "runsc", "", "path of gVisor's runsc (default /usr/local/lib/sbx/runsc); without it only runc sandboxes are served")
	fs.StringVar(&cfg.Runtime, "runtime", "runc", "default runtime of sandboxes whose create request names none: runc or runsc (gVisor)")
	fs.StringVar(&cfg.Domain, "domain", "", "sandbox domain for {port}-{id}.DOMAIN hosts (default localhost:PORT)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate (chain) `FILE`: serve HTTPS only, e.g. a wildcard certificate for *.DOMAIN (reloaded when it changes)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key `FILE` of --tls-cert")
	fs.DurationVar(&cfg.DefaultTimeout, "default-timeout", 5*time.Minute, "time to live of a sandbox whose create request names none")
	fs.DurationVar(&cfg.MaxTimeout, "max-timeout", 0, "largest time to live a request may ask for (0: unlimited, and no-limit sandboxes allowed)")
	fs.Float64Var(&cfg.CPUs, "cpus", 1, "default CPU quota per sandbox, in cores")
	fs.Int64Var(&cfg.MemoryMB, "memory-mb", 512, "default memory limit per sandbox, in MiB")
	fs.Float64Var(&cfg.MaxCPUs, "max-cpus", 0, "largest CPU quota a create request or template may set, in cores (0: no bound)")
	fs.Int64Var(&cfg.MaxMemoryMB, "max-memory-mb", 0, "largest memory limit a create request or template may set, in MiB (0: no bound)")
	fs.Float64Var(&cfg.CapacityCPUs, "capacity-cpus", 0, "CPU quotas the sandboxes holding a box may reserve together, in cores; creates and resumes past it are answered 503 (0: no bound)")
	fs.Int64Var(&cfg.CapacityMemoryMB, "capacity-memory-mb", 0, "memory limits the sandboxes holding a box may reserve together, in MiB; creates and resumes past it are answered 503 (0: no bound)")
	fs.DurationVar(&cfg.ReadyTimeout, "ready-timeout", 60*time.Second, "how long a create waits for a template's ready check (templates may set their own)")
	fs.Int64Var(&cfg.Pids, "pids", 1024, "maximum number of processes and threads per sandbox")
	fs.Int64Var(&cfg.DiskMB, "disk-mb", 10240, "disk quota per sandbox, in MiB: each sandbox writes to its own sparse ext4 disk of this size (0: no quota, writes go to the data dir's filesystem)")
	fs.IntVar(&cfg.MaxFork, "max-fork", 10, "most copies one fork request may make")
	fs.Int64Var(&cfg.VolumeSizeMB, "volume-size-mb", 1024, "size quota of a volume whose create names none, in MiB (each volume is a sparse ext4 image of this size under the data dir)")
	fs.Int64Var(&cfg.VolumeMaxSizeMB, "volume-max-size-mb", 16384, "largest size quota a volume create may ask for, in MiB")
	fs.IntVar(&cfg.WarmPool.Min, "warm-pool", 2, "sandboxes of the default template and runtime kept started ahead of creates, so that a create with default resources takes one in milliseconds (0: off)")
	fs.IntVar(&cfg.WarmPool.Max, "warm-pool-max", 0, "most sandboxes the warm pool grows to when recent demand (the most creates within 10 s over the last 5 minutes) exceeds --warm-pool (0: --warm-pool, no growth)")
	fs.Int64Var(&cfg.WarmPool.MemoryMB, "warm-pool-memory-mb", 1024, "memory the warm pool's sandboxes may use together, as measured from their cgroups (0: no bound)")
	fs.IntVar(&cfg.WarmPool.Parallel, "warm-pool-parallel", 4, "sandboxes the warm pool starts at once when it refills")
	fs.Var(templatePoolsFlag{&cfg.WarmPool.Templates}, "warm-pool-template", "`NAME[=N]`: keep N (default 1) sandboxes of template NAME started, its start command run and ready (the code interpreter's kernel started), for creates of it that set no environment variables (repeatable or comma-separated)")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", "", "address to serve Prometheus metrics on, at /metrics, unauthenticated: keep it on loopback or a private network (default: off)")
	fs.Float64Var(&cfg.RateLimit.Rate, "rate-limit-rps", 100, "API calls a second each API key may make on average, answered 429 with Retry-After past it (0: no limit; each node of a fleet limits separately; data-plane calls are not limited)")
	fs.IntVar(&cfg.RateLimit.Burst, "rate-limit-burst", 200, "API calls each API key may make at once above --rate-limit-rps")
	fs.Float64Var(&cfg.CreateRateLimit.Rate, "create-rate-limit", 20, "sandbox creates and forks a second each API key may make on average, answered 429 with Retry-After past it (0: no limit)")
	fs.IntVar(&cfg.CreateRateLimit.Burst, "create-rate-limit-burst", 100, "sandbox creates and forks each API key may make at once above --create-rate-limit")
	fs.DurationVar(&cfg.MetricsInterval, "metrics-interval", 5*time.Second, "time between resource samples of each running sandbox (getMetrics)")
	var idShift uint
	fs.UintVar(&idShift, "id-shift", 100000000, "first host uid/gid of the sandboxes' user namespaces (sandbox ids 0-65535 map to it and up); 0 disables user namespaces")
	netFlags := addNetworkFlags(fs)
	var webhookAllow string
	fs.StringVar(&webhookAllow, "webhook-allow", "", "comma-separated CIDRs webhooks may reach although they are private, loopback or link-local (e.g. 127.0.0.1/32 for a receiver on this host); sbx's own address and the sandboxes' never")
	fs.DurationVar(&cfg.Events.EventsRetention, "events-retention", 30*24*time.Hour, "how long lifecycle events and their webhook deliveries are kept (0: forever)")
	fs.DurationVar(&cfg.Events.AuditRetention, "audit-retention", 90*24*time.Hour, "how long audit log records are kept (0: forever)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	if err := setFromEnv(fs); err != nil {
		fmt.Fprintln(stderr, "sbx serve:", err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sbx serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		fmt.Fprintln(stderr, "sbx serve: --log-level:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if idShift > 1<<32-1-65536 {
		fmt.Fprintln(stderr, "sbx serve: --id-shift is too large")
		return 2
	}
	cfg.IDShift = uint32(idShift)
	if cfg.MaxCPUs > 0 && cfg.CPUs > cfg.MaxCPUs || cfg.MaxMemoryMB > 0 && cfg.MemoryMB > cfg.MaxMemoryMB {
		fmt.Fprintln(stderr, "sbx serve: --cpus/--memory-mb must not exceed --max-cpus/--max-memory-mb")
		return 2
	}
	if cfg.CapacityCPUs < 0 || cfg.CapacityMemoryMB < 0 {
		fmt.Fprintln(stderr, "sbx serve: --capacity-cpus and --capacity-memory-mb must not be negative")
		return 2
	}
	var err error
	if cfg.Net, err = netFlags.config(); err != nil {
		fmt.Fprintln(stderr, "sbx serve:", err)
		return 2
	}
	if cfg.Events.WebhookAllow, err = parseCIDRs(webhookAllow); err != nil {
		fmt.Fprintln(stderr, "sbx serve: --webhook-allow:", err)
		return 2
	}
	if cfg.Events.EventsRetention < 0 || cfg.Events.AuditRetention < 0 {
		fmt.Fprintln(stderr, "sbx serve: --events-retention and --audit-retention must not be negative")
		return 2
	}
	cfg.AdminKey = os.Getenv("SBX_API_KEY")
	cfg.Progress = stderr

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		<-sigs
		log.Info("signal received; draining (send again to exit now)")
		cancel()
		<-sigs
		log.Warn("second signal; exiting now")
		os.Exit(1)
	}()
	if err := server.Run(ctx, cfg, log); err != nil {
		log.Error("sbx serve failed", "err", err)
		return 1
	}
	return 0
}

// setFromEnv sets every flag of fs from SBX_<FLAG_NAME> when that variable is
// set; flags on the command line still win.
func setFromEnv(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil {
			return
		}
		name := "SBX_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%s: %w", name, strconv.Quote(v), e)
			}
		}
	})
	return err
}

// parseCIDRs parses a comma-separated list of CIDRs or single addresses
// (IPv4 or IPv6).
func parseCIDRs(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range splitList(list) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR or an address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
