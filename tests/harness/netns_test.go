package harness

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/sbxdev/sbx/internal/pgtest"
)

// TestNetns checks the namespaces' network: a host reaches Postgres
// through the relay on the bridge, and loses it with its link down.
func TestNetns(t *testing.T) {
	dsn := pgtest.Postgres(t)
	ns := NewNetns(t, 2)
	tcp := ns.Postgres(t, dsn)
	out, err := exec.Command("nsenter", "--net=/run/netns/"+ns.Hosts[0].Name, "--", "psql", tcp, "-tAc", "select 42").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "42" {
		t.Fatalf("psql from h1: %v %s", err, out)
	}
	ns.Hosts[0].LinkDown(t)
	out, err = exec.Command("nsenter", "--net=/run/netns/"+ns.Hosts[0].Name, "--", "psql", tcp+"&connect_timeout=2", "-tAc", "select 42").CombinedOutput()
	if err == nil {
		t.Fatalf("psql from h1 with its link down: %s", out)
	}
	ns.Hosts[0].LinkUp(t)
	out, err = exec.Command("nsenter", "--net=/run/netns/"+ns.Hosts[1].Name, "--", "psql", tcp, "-tAc", "select 7").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "7" {
		t.Fatalf("psql from h2: %v %s", err, out)
	}
}
