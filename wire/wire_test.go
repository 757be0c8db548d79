package wire_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/sbxdev/sbx/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func ptr[T any](v T) *T { return &v }

var (
	t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	t1 = time.Date(2025, 1, 2, 4, 4, 5, 123456789, time.UTC)
)

func network() *wire.SandboxNetwork {
	return &wire.SandboxNetwork{
		AllowPublicTraffic: ptr(false), AllowOut: []string{"1.1.1.1", "*.example.com:443"}, DenyOut: []string{"0.0.0.0/0"},
		EgressProxy: json.RawMessage(`null`), Rules: json.RawMessage(`{}`),
		MaskRequestHost: "${PORT}-app.internal", HTTPSPorts: []int{8443},
	}
}

func listed() wire.ListedSandbox {
	return wire.ListedSandbox{
		SandboxID: "i3x8k2p0q9z1", TemplateID: "base", Alias: "base", ClientID: "sbx", StartedAt: t0, EndAt: t1,
		CPUCount: 2, MemoryMB: 512, DiskSizeMB: 1024, EnvdVersion: "0.2.0", Metadata: map[string]string{"team": "a"},
		State: "paused", Runtime: "runsc", PauseKind: "memory",
		VolumeMounts: []wire.SandboxVolumeMount{{Name: "data", Path: "/mnt/data"}},
	}
}

func sandbox() *wire.Sandbox {
	return &wire.Sandbox{
		SandboxID: "i3x8k2p0q9z1", TemplateID: "base", ClientID: "sbx", EnvdVersion: "0.2.0", EnvdAccessToken: "envd-token",
		Domain: ptr("sbx.example.com"), TrafficAccessToken: ptr("traffic-token"), Alias: "base", Runtime: "runc",
	}
}

func sandboxMetric() wire.SandboxMetric {
	return wire.SandboxMetric{
		Timestamp: t0, TimestampUnix: t0.Unix(), CPUCount: 2, CPUUsedPct: 37.5, MemUsed: 104857600, MemTotal: 536870912,
		MemCache: 4194304, DiskUsed: 20971520, DiskTotal: 1073741824,
	}
}

func logEntries() []wire.BuildLogEntry {
	return []wire.BuildLogEntry{{Timestamp: t1, Level: "error", Message: "exit status 2", Step: "base"}}
}

func nodeMetrics() wire.NodeMetrics {
	return wire.NodeMetrics{
		AllocatedCPU: 4, AllocatedMemoryBytes: 2 << 30, CPUPercent: 37, MemoryUsedBytes: 9 << 30, CPUCount: 16, MemoryTotalBytes: 64 << 30,
		Disks:          []wire.DiskMetrics{{MountPoint: "/var/lib/sbx", Device: "/dev/nvme0n1p2", FilesystemType: "ext4", UsedBytes: 100 << 30, TotalBytes: 1 << 40}},
		HugePagesTotal: 512, HugePagesUsed: 128, HugePagesReserved: 16, HugePageSizeBytes: 2 << 20,
	}
}

func teamLimits() wire.TeamLimits {
	return wire.TeamLimits{MaxSandboxes: 5, MaxCPUs: 8, MaxMemoryMB: 16384, MaxDiskMB: 51200, MaxTimeoutSeconds: 86400,
		MaxPaused: 20, MaxTemplates: 50, MaxVolumeMB: 10240}
}

func keyMask() wire.IdentifierMaskingDetails {
	return wire.IdentifierMaskingDetails{Prefix: "e2b_", ValueLength: 40, MaskedValuePrefix: "01", MaskedValueSuffix: "4567"}
}

func machineInfo() wire.MachineInfo {
	return wire.MachineInfo{CPUFamily: "6", CPUModel: "143", CPUModelName: "Intel(R) Xeon(R) Platinum 8480+", CPUArchitecture: "amd64"}
}

// goldens has one fully populated value of each wire type, by golden file.
var goldens = map[string]any{
	"new-sandbox": wire.NewSandbox{
		TemplateID: "base", Timeout: ptr[int64](300), Metadata: map[string]string{"team": "a"}, EnvVars: map[string]string{"K": "V"},
		CPUCount: ptr(1.5), MemoryMB: ptr[int64](1024), AutoPause: ptr(true), Secure: ptr(true), Network: network(),
		AllowInternetAccess: ptr(false), Runtime: "runsc", AutoPauseMemory: ptr(false), AutoResume: &wire.AutoResume{Enabled: true},
		Lifecycle: "persistent", IdlePause: ptr[int64](60),
		VolumeMounts: []wire.SandboxVolumeMount{{Name: "data", Path: "/mnt/data"}},
		IAM:          json.RawMessage(`{"tokens":{}}`),
	},
	"new-secret":     wire.NewSecret{Name: "openai-key", Value: "sk-…", Metadata: map[string]string{"owner": "ml"}},
	"secret-update":  wire.SecretUpdate{Value: "sk-…", Metadata: map[string]string{"owner": "ml"}},
	"secret":         wire.Secret{SecretID: "sec_0a1b2c3d4e5f60718293", Name: "openai-key", CurrentVersion: 2, Metadata: map[string]string{"owner": "ml"}, CreatedAt: t0, UpdatedAt: t1},
	"sandbox":        *sandbox(),
	"listed-sandbox": listed(),
	"sandbox-detail": wire.SandboxDetail{
		ListedSandbox: listed(), EnvdAccessToken: "envd-token", Domain: ptr("sbx.example.com"),
		Lifecycle: wire.Lifecycle{AutoResume: true, OnTimeout: "pause", Persistent: true, IdlePause: 60},
		Error:     "out of memory", Network: network(), AllowInternetAccess: ptr(true),
	},
	"new-volume":       wire.NewVolume{Name: "data", SizeMB: ptr[int64](256)},
	"volume":           wire.Volume{VolumeID: "v8k2p0q9z1i3x0a1b2c3", Name: "data", SizeMB: 256},
	"volume-and-token": wire.VolumeAndToken{VolumeID: "v8k2p0q9z1i3x0a1b2c3", Name: "data", Token: "sbxv_0a1b2c", SizeMB: 256},
	"volume-metadata":  wire.VolumeMetadata{UID: ptr[uint32](1000), GID: ptr[uint32](1000), Mode: ptr[uint32](0o640)},
	"volume-entry-stat": wire.VolumeEntryStat{
		Name: "link", Type: "symlink", Path: "/dir/link", Size: 4, Mode: 0o777, UID: 1000, GID: 1000,
		Atime: t0, Mtime: t1, Ctime: t1, Target: "file",
	},
	"timeout-request": wire.TimeoutRequest{Timeout: ptr[int64](90)},
	"refresh-request": wire.RefreshRequest{Duration: ptr[int64](30)},
	"connect-request": wire.ConnectRequest{Timeout: ptr[int64](120), Memory: ptr(false)},
	"network-update": wire.NetworkUpdate{
		AllowInternetAccess: ptr(false), AllowOut: []string{"10.0.0.0/8"}, DenyOut: []string{"8.8.8.8:53"},
		EgressProxy: json.RawMessage(`null`), Rules: json.RawMessage(`{}`),
	},
	"pause-request":    wire.PauseRequest{Memory: ptr(false)},
	"resume-request":   wire.ResumeRequest{Timeout: ptr[int64](60), AutoPause: ptr(true), Memory: ptr(false)},
	"snapshot-request": wire.SnapshotRequest{Name: "before-upgrade"},
	"snapshot": wire.Snapshot{
		SnapshotID: "snap_0a1b2c", Names: []string{"before-upgrade"}, SandboxID: "i3x8k2p0q9z1", TemplateID: "base",
		Kind: "memory", CreatedAt: t0, SizeBytes: 4096,
	},
	"fork-request": wire.ForkRequest{Count: ptr(3), Timeout: ptr[int64](600)},
	"fork-result":  wire.ForkResult{Sandbox: sandbox(), Error: &wire.Error{Code: 503, Message: "no capacity"}},
	"template": wire.Template{
		TemplateID: "base", BuildID: "base", Aliases: []string{"base"}, Names: []string{"base"}, CPUCount: 2, MemoryMB: 512,
		DiskSizeMB: 117, SizeBytes: 123456789, Public: true, CreatedAt: t0, UpdatedAt: t1, BuildStatus: "ready", EnvdVersion: "0.2.0",
	},
	"template-alias": wire.TemplateAlias{TemplateID: "web", Public: true},
	"template-settings": wire.TemplateSettings{
		StartCmd: ptr("python3 -m http.server 8000"), ReadyCmd: ptr("curl -sf localhost:8000"), ReadyPort: ptr(8000),
		ReadyTimeout: ptr(30), Env: map[string]string{"MODE": "prod"}, Workdir: ptr("/srv"), User: ptr("app"),
		CPUCount: ptr(2.0), MemoryMB: ptr[int64](512),
	},
	"import-request": wire.ImportRequest{
		Name: "web", Source: "registry", Ref: "127.0.0.1:5000/web:1", Path: "/srv/web.tar", Insecure: true,
		TemplateSettings: wire.TemplateSettings{
			StartCmd: ptr(""), ReadyCmd: ptr("true"), ReadyPort: ptr(8000), ReadyTimeout: ptr(10),
			Env: map[string]string{"A": "1"}, Workdir: ptr("/"), User: ptr("root"), CPUCount: ptr(0.5), MemoryMB: ptr[int64](256),
		},
	},
	"template-detail": wire.TemplateDetail{
		TemplateID: "web", CreatedAt: t0, Source: "registry 127.0.0.1:5000/web:1", SizeBytes: 3145728, DiskBytes: 3149824,
		Layers:      []wire.TemplateLayer{{Digest: "sha256:a1a1", SizeBytes: 1048576}},
		BuildLayers: []string{"layer-2", "layer-1"}, Base: "base", User: "app", Env: []string{"PATH=/usr/bin"}, Workdir: "/srv",
		StartCmd: []string{"/bin/sh", "-c", "python3 -m http.server 8000"}, ReadyCmd: "true", ReadyPort: 8000, ReadyTimeout: 30,
		CPUCount: 1.5, MemoryMB: 512, CPUCountSet: true, MemoryMBSet: true, Sandboxes: 2,
	},
	"template-build-request": wire.TemplateBuildRequest{Name: "web", Alias: "web", Tags: []string{"latest"}, CPUCount: ptr(2), MemoryMB: ptr[int64](1024)},
	"template-build-response": wire.TemplateBuildResponse{
		TemplateID: "web", BuildID: "bld_0a1b", Aliases: []string{"web"}, Names: []string{"web"}, Tags: []string{"latest"}, Public: true,
	},
	"assign-template-tags":   wire.AssignTemplateTags{Target: "web:v1", Tags: []string{"prod", "stable"}},
	"assigned-template-tags": wire.AssignedTemplateTags{Tags: []string{"prod", "stable"}, BuildID: "0a1b2c3d-0000-4000-8000-000000000001"},
	"delete-template-tags":   wire.DeleteTemplateTags{Name: "web", Tags: []string{"prod"}},
	"template-tag":           wire.TemplateTag{Tag: "v1", BuildID: "0a1b2c3d-0000-4000-8000-000000000001", CreatedAt: t1},
	"template-files":         wire.TemplateFiles{Present: true, URL: "http://127.0.0.1:3000/sbx/v1/uploads/bld_0a1b/00ff?token=t", Headers: map[string]string{"X-A": "b"}},
	"template-build-start": wire.TemplateBuildStart{
		FromImage: "ubuntu:24.04", FromTemplate: "base", FromImageRegistry: json.RawMessage(`null`),
		StartCmd: ptr("./serve"), ReadyCmd: ptr("true"),
		Steps: []wire.TemplateBuildStep{{Type: "COPY", Args: []string{"app", "/app", "root", "0755"}, FilesHash: "00ff", Force: true}},
		Force: true,
	},
	"template-build-info": wire.TemplateBuildInfo{
		BuildID: "bld_0a1b", TemplateID: "web", Status: "error", LogEntries: logEntries(), Logs: []string{"exit status 2"},
		Reason: &wire.BuildReason{Message: "step 1 failed", Step: "1", LogEntries: logEntries()},
	},
	"build": wire.Build{
		BuildID: "bld_0a1b", TemplateID: "web", Status: "error", CreatedAt: t0, FinishedAt: &t1,
		Error: "RUN make: exit status 2", Step: 3, ExitCode: 2, Logs: 42,
	},
	"build-event":        wire.BuildEvent{Time: t1, Level: "error", Step: 3, Kind: "end", Message: "RUN make: exit status 2", Status: "error", ExitCode: 2},
	"builtin-build-line": wire.BuiltinBuildLine{Kind: "end", Message: "installing packages", Status: "error", Error: "apt-get: exit status 100"},
	"new-key":            wire.NewKey{Name: "ci", Team: "acme", Role: "admin"},
	"new-team":           wire.NewTeam{Name: "acme", TeamLimits: teamLimits()},
	"team-update": wire.TeamUpdate{MaxSandboxes: ptr(int64(2)), MaxCPUs: ptr(4.0), MaxMemoryMB: ptr(int64(4096)),
		MaxDiskMB: ptr(int64(8192)), MaxTimeoutSeconds: ptr(int64(3600)), MaxPaused: ptr(int64(3)), MaxTemplates: ptr(int64(10)), MaxVolumeMB: ptr(int64(1024))},
	"team-info": wire.TeamInfo{ID: "7f1c2d3e-0000-4000-8000-000000000001", Name: "acme",
		TeamLimits: teamLimits(), CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
	"key": wire.Key{
		ID: "key_0a1b2c3d4e5f6a7b", Name: "ci", Key: "e2b_0123456789abcdef0123456789abcdef01234567", Prefix: "e2b_012345",
		Admin: true, CreatedAt: t0, Team: "default",
	},
	"team-api-key": wire.TeamAPIKey{ID: "key_0a1b2c3d4e5f6a7b", Name: "ci", Mask: keyMask(), CreatedAt: t0,
		CreatedBy: &wire.TeamUser{ID: "7f1c2d3e-0000-4000-8000-000000000002", Email: ptr("ops@example.com")}, LastUsed: &t0},
	"created-team-api-key": wire.CreatedTeamAPIKey{ID: "key_0a1b2c3d4e5f6a7b", Key: "e2b_0123456789abcdef0123456789abcdef01234567",
		Mask: keyMask(), Name: "ci", CreatedAt: t0,
		CreatedBy: &wire.TeamUser{ID: "7f1c2d3e-0000-4000-8000-000000000002", Email: ptr("ops@example.com")}, LastUsed: &t0},
	"new-team-api-key":    wire.NewTeamAPIKey{Name: "ci"},
	"update-team-api-key": wire.UpdateTeamAPIKey{Name: "deploys"},
	"node": wire.Node{
		ID: "host-a", ServiceInstanceID: "host-a@2025-01-02T03:04:05Z", ClusterID: "00000000-0000-0000-0000-000000000000",
		Status: "ready", StatusChangedAt: t0, SandboxCount: 3, Metrics: nodeMetrics(), CreateSuccesses: 7, CreateFails: 1,
		SandboxStartingCount: 1, Version: "v0.9.0", Commit: "0123456789ab", MachineInfo: machineInfo(),
	},
	"node-detail": wire.NodeDetail{
		ID: "host-a", ServiceInstanceID: "host-a@2025-01-02T03:04:05Z", ClusterID: "00000000-0000-0000-0000-000000000000",
		Status: "unhealthy", StatusChangedAt: t1, SandboxCount: 3, Metrics: nodeMetrics(), CreateSuccesses: 7, CreateFails: 1,
		Version: "v0.9.0", Commit: "0123456789ab", MachineInfo: machineInfo(),
	},
	"sandbox-event": wire.SandboxEvent{
		ID: "5f0c6c52-9d0e-4a4f-8f61-2c1e0b6e8c11", Version: "v1", Type: wire.EventUpdated, SandboxID: "i3x8k2p0q9z1",
		SandboxExecutionID: "i3x8k2p0q9z1", SandboxTemplateID: "base", SandboxBuildID: "base",
		SandboxTeamID: "00000000-0000-0000-0000-000000000000", Timestamp: t0,
		EventData: &wire.SandboxEventData{
			Reason: "timeout", State: "paused", PreviousState: "pausing", PauseKind: "memory", EndAt: &t1, NoTimeout: true, Network: true, SnapshotID: "snap_0a1b2c",
		},
	},
	"new-webhook": wire.NewWebhook{
		Name: "ci", URL: "https://hooks.example.com/sbx", Events: []string{wire.EventCreated, wire.EventKilled}, Enabled: ptr(true), SignatureSecret: "s3cret",
	},
	"webhook-update": wire.WebhookUpdate{
		Name: ptr("ci"), URL: ptr("https://hooks.example.com/v2"), Events: []string{wire.EventPaused}, Enabled: ptr(false), SignatureSecret: ptr("n3w"),
	},
	"webhook": wire.Webhook{
		ID: "0d9b2c4e-7a51-4c1f-9f0e-6b1f2a3c4d5e", Name: "ci", URL: "https://hooks.example.com/sbx",
		Events: []string{wire.EventCreated, wire.EventKilled}, Enabled: true, CreatedAt: t0,
	},
	"webhook-delivery": wire.WebhookDelivery{
		EventID: "5f0c6c52-9d0e-4a4f-8f61-2c1e0b6e8c11", Type: wire.EventCreated, SandboxID: "i3x8k2p0q9z1", Attempts: 3,
		NextAttemptAt: &t1, DeliveredAt: &t1, FailedAt: &t1, LastError: "the receiver answered 500 Internal Server Error",
	},
	"audit-record": wire.AuditRecord{
		ID: "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", Time: t0, TeamID: "00000000-0000-0000-0000-000000000000",
		KeyID: "key_0a1b2c3d4e5f6a7b", KeyName: "ci", Admin: true, Method: "DELETE", Route: "DELETE /sandboxes/{id}",
		ObjectID: "i3x8k2p0q9z1", Status: 204, Remote: "127.0.0.1",
	},
	"sandbox-logs-v2": wire.SandboxLogsV2{Logs: []wire.SandboxLogEntry{sandboxLogEntry()}},
	"sandbox-logs": wire.SandboxLogs{
		Logs:       []wire.SandboxLogLine{{Timestamp: t1, Line: `process started cmd=/bin/bash pty=false tag=""`}},
		LogEntries: []wire.SandboxLogEntry{sandboxLogEntry()},
	},
	"sandbox-metric":         sandboxMetric(),
	"sandboxes-with-metrics": wire.SandboxesWithMetrics{Sandboxes: map[string]wire.SandboxMetric{"i3x8k2p0q9z1": sandboxMetric()}},
	"team":                   wire.Team{TeamID: "default", Name: "default", APIKey: "e2b_0123456789abcdef0123456789abcdef01234567", IsDefault: true},
	"team-metric":            wire.TeamMetric{Timestamp: t0, TimestampUnix: t0.Unix(), ConcurrentSandboxes: 3, SandboxStartRate: 0.2},
	"max-team-metric":        wire.MaxTeamMetric{Timestamp: t0, TimestampUnix: t0.Unix(), Value: 3},
	"usage-report": wire.UsageReport{TeamID: "default", By: "sandbox", Since: t0, Until: t1,
		Total:   wire.UsageRecord{SandboxID: "i3x8k2p0q9z1", Day: "2026-12-07", RunSeconds: 120, VCPUSeconds: 240, CPUSeconds: 61.5, MemoryGiBSeconds: 60, MemoryUsedGiBSeconds: 12.25, DiskGiBHours: 0.333, EgressBytes: 5 << 20, PausedGiBHours: 1.5},
		Records: []wire.UsageRecord{{SandboxID: "i3x8k2p0q9z1", Day: "2026-12-07", RunSeconds: 120, VCPUSeconds: 240, CPUSeconds: 61.5, MemoryGiBSeconds: 60, MemoryUsedGiBSeconds: 12.25, DiskGiBHours: 0.333, EgressBytes: 5 << 20, PausedGiBHours: 1.5}},
	},
	"error":  wire.Error{Code: 404, Message: "sandbox i3x8k2p0q9z1 not found"},
	"health": wire.Health{Status: "ok"},
}

func sandboxLogEntry() wire.SandboxLogEntry {
	return wire.SandboxLogEntry{Timestamp: t1, Level: "info", Message: "process started", Fields: map[string]string{"cmd": "/bin/bash", "pty": "false", "tag": ""}}
}

// TestGolden compares each type's JSON with testdata/NAME.json.
func TestGolden(t *testing.T) {
	for name, v := range goldens {
		t.Run(name, func(t *testing.T) {
			checkPopulated(t, reflect.ValueOf(v), reflect.TypeOf(v).Name())
			got, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./wire -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs (the wire format changed; if on purpose, run go test ./wire -update):\n got: %s\nwant: %s", path, got, want)
			}
		})
	}
}

// TestDecodeGolden decodes each golden file strictly back into its type:
// every field of the file is one of the type's, and the value is the same.
func TestDecodeGolden(t *testing.T) {
	for name, v := range goldens {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			p := reflect.New(reflect.TypeOf(v))
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(p.Interface()); err != nil {
				t.Fatalf("decode %s: %v", name, err)
			}
			// Raw JSON fields keep the file's indentation, so the values
			// are compared by their compact encoding.
			got, _ := json.Marshal(p.Elem().Interface())
			want, _ := json.Marshal(v)
			if !bytes.Equal(got, want) {
				t.Errorf("decoded %s:\n got: %s\nwant: %s", name, got, want)
			}
		})
	}
}

// TestGoldenFiles fails for a file in testdata that no type checks.
func TestGoldenFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		if _, ok := goldens[name[:len(name)-len(".json")]]; !ok {
			t.Errorf("%s has no value in goldens", f)
		}
	}
}

// checkPopulated fails for a zero field of v, recursively, so that each
// golden file shows every field its type has.
func checkPopulated(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			t.Errorf("%s is nil: the golden value must set every field", path)
			return
		}
		// A pointer to a zero value is set (false, "", 0 are sent).
		if v.Elem().Kind() == reflect.Struct {
			checkPopulated(t, v.Elem(), path)
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			if v.Interface().(time.Time).IsZero() {
				t.Errorf("%s is zero", path)
			}
			return
		}
		for i := range v.NumField() {
			checkPopulated(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			t.Errorf("%s is empty: the golden value must set every field", path)
			return
		}
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() != reflect.Uint8 {
			for i := range v.Len() {
				checkPopulated(t, v.Index(i), path)
			}
		}
	default:
		if v.IsZero() {
			t.Errorf("%s is zero: the golden value must set every field", path)
		}
	}
}
