package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// atMost is a quota check allowing n active sandboxes. It takes a few
// milliseconds, so that racing writes overlap between their check and
// their write unless the lock serialises them.
func atMost(n int64) func(*Team, TeamUsage) error {
	return func(t *Team, u TeamUsage) error {
		time.Sleep(20 * time.Millisecond)
		if u.Active+1 > n {
			return errdefs.New(errdefs.ErrResourceExhausted, "team %q is at its limit of %d", t.Name, n)
		}
		return nil
	}
}

// TestQuotaRace: 50 creates racing against a limit of 5, split between two
// nodes (two connection pools, as two servers on one database), store
// exactly 5 sandboxes; the other 45 are refused by the check.
func TestQuotaRace(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		nodes := []*DB{open(t, dsn).ForNode("a"), open(t, dsn).ForNode("b")}
		if err := nodes[0].CreateTeam(ctx, &Team{ID: "q", Name: "q", CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		start := make(chan struct{})
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				sb := &Sandbox{ID: fmt.Sprintf("sb%02d", i), Template: "base", State: "creating", Runtime: "runc",
					CreatedAt: time.Now(), CPUs: 1, MemoryMB: 512, DiskMB: 1024, Team: "q"}
				errs <- nodes[i%2].CreateSandboxQuota(ctx, sb, &Quota{Team: "q", Sandbox: sb.ID, Check: atMost(5)})
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		made, refused := 0, 0
		for err := range errs {
			switch {
			case err == nil:
				made++
			case errors.Is(err, errdefs.ErrResourceExhausted):
				refused++
			default:
				t.Errorf("racing create: %v", err)
			}
		}
		if made != 5 || refused != 45 {
			t.Fatalf("50 racing creates against 5 on two nodes: %d stored, %d refused; want 5 and 45", made, refused)
		}
		u, err := nodes[1].TeamUsage(ctx, "q", "")
		if err != nil {
			t.Fatal(err)
		}
		if u != (TeamUsage{Active: 5, CPUs: 5, MemoryMB: 5 * 512, DiskMB: 5 * 1024}) {
			t.Errorf("TeamUsage = %+v; want the 5 stored ones, on both nodes", u)
		}
	})
}

// TestQuotaUpdate: a move stored under a quota sees the team's other
// sandboxes on every node, and a refused move writes nothing, its event
// included.
func TestQuotaUpdate(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		a, b := open(t, dsn).ForNode("a"), open(t, dsn).ForNode("b")
		if err := a.CreateTeam(ctx, &Team{ID: "q", Name: "q", CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		run := &Sandbox{ID: "run", Template: "base", State: "running", Runtime: "runc", CreatedAt: time.Now(), Team: "q", DiskMB: 100}
		if err := a.CreateSandbox(ctx, run); err != nil {
			t.Fatal(err)
		}
		paused := &Sandbox{ID: "paused", Template: "base", State: "paused", Runtime: "runc", CreatedAt: time.Now(), Team: "q", DiskMB: 100}
		if err := b.CreateSandbox(ctx, paused); err != nil {
			t.Fatal(err)
		}
		other := &Sandbox{ID: "other", Template: "base", State: "running", Runtime: "runc", CreatedAt: time.Now(), DiskMB: 100}
		if err := b.CreateSandbox(ctx, other); err != nil {
			t.Fatal(err)
		}
		u, err := a.TeamUsage(ctx, "q", "")
		if err != nil || u != (TeamUsage{Active: 1, DiskMB: 200, Paused: 1}) {
			t.Fatalf("TeamUsage = %+v, %v; want one active, one paused, 200 MiB of disk", u, err)
		}

		// b resumes its paused one while a's runs: refused at one.
		next := *paused
		next.State = "resuming"
		ev := &Event{ID: "ev-1", Type: "sandbox.lifecycle.resumed", SandboxID: paused.ID, TeamID: "q", At: time.Now(), Data: []byte(`{}`)}
		err = b.UpdateSandboxEventQuota(ctx, &next, ev, &Quota{Team: "q", Sandbox: paused.ID, Check: atMost(1)})
		if !errors.Is(err, errdefs.ErrResourceExhausted) {
			t.Fatalf("resume past the limit: %v; want resource exhausted", err)
		}
		got, err := b.GetSandbox(ctx, paused.ID)
		if err != nil || got.State != "paused" || got.Version != paused.Version {
			t.Errorf("after a refused move the record is %+v, %v; want it unchanged", got, err)
		}
		if evs, err := b.ListEvents(ctx, EventFilter{SandboxID: paused.ID}); err != nil || len(evs) != 0 {
			t.Errorf("a refused move stored events %+v, %v", evs, err)
		}
		// With room for two it goes, with its event.
		if err := b.UpdateSandboxEventQuota(ctx, &next, ev, &Quota{Team: "q", Sandbox: paused.ID, Check: atMost(2)}); err != nil {
			t.Fatal(err)
		}
		if got, err := b.GetSandbox(ctx, paused.ID); err != nil || got.State != "resuming" || got.Version != paused.Version+1 {
			t.Errorf("after the move: %+v, %v", got, err)
		}
		if evs, err := b.ListEvents(ctx, EventFilter{SandboxID: paused.ID}); err != nil || len(evs) != 1 {
			t.Errorf("the move's event: %+v, %v; want one", evs, err)
		}
		// A team without a row has no limits.
		lone := &Sandbox{ID: "lone", Template: "base", State: "creating", Runtime: "runc", CreatedAt: time.Now(), Team: "gone"}
		if err := a.CreateSandboxQuota(ctx, lone, &Quota{Team: "gone", Sandbox: "lone", Check: atMost(0)}); err != nil {
			t.Errorf("create for a team that does not exist: %v", err)
		}
		if err := a.CreateSandboxQuota(ctx, lone, &Quota{Team: "q", Sandbox: "lone", Check: atMost(9)}); !errors.Is(err, errdefs.ErrConflict) {
			t.Errorf("a second create of one id: %v; want conflict", err)
		}
	})
}

// TestTeamLimits: every limit survives a write and a read, and the
// snapshots and volumes are counted per team.
func TestTeamLimits(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		l := TeamLimits{MaxSandboxes: 1, MaxCPUs: 2.5, MaxMemoryMB: 3, MaxDiskMB: 4, MaxTimeoutSec: 5, MaxPaused: 6, MaxTemplates: 7, MaxVolumeMB: 8}
		if err := db.CreateTeam(ctx, &Team{ID: "q", Name: "q", CreatedAt: time.Now(), Limits: l}); err != nil {
			t.Fatal(err)
		}
		if got, err := db.GetTeam(ctx, "q"); err != nil || got.Limits != l {
			t.Errorf("GetTeam = %+v, %v; want limits %+v", got, err, l)
		}
		l2 := TeamLimits{MaxSandboxes: 8, MaxCPUs: 7, MaxMemoryMB: 6, MaxDiskMB: 5, MaxTimeoutSec: 4, MaxPaused: 3, MaxTemplates: 2, MaxVolumeMB: 1}
		if err := db.SetTeamLimits(ctx, "q", l2); err != nil {
			t.Fatal(err)
		}
		if got, err := db.GetTeam(ctx, "q"); err != nil || got.Limits != l2 {
			t.Errorf("after SetTeamLimits: %+v, %v; want %+v", got, err, l2)
		}
		for i, sn := range []*Snapshot{
			{ID: "s1", Team: "q", State: "ready"}, {ID: "s2", Team: "q", State: "ready", Internal: true}, {ID: "s3", State: "ready"},
		} {
			sn.CreatedAt = time.Now().Add(time.Duration(i) * time.Second)
			if err := db.PutSnapshot(ctx, sn); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := db.TeamSnapshots(ctx, "q"); err != nil || n != 1 {
			t.Errorf("TeamSnapshots = %d, %v; want 1 (the internal one and the default team's do not count)", n, err)
		}
		for _, v := range []*Volume{{ID: "v1", Name: "v1", SizeMB: 100, Team: "q"}, {ID: "v2", Name: "v2", SizeMB: 50, Team: "q"}, {ID: "v3", Name: "v3", SizeMB: 7}} {
			v.CreatedAt = time.Now()
			if err := db.CreateVolume(ctx, v); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := db.TeamVolumeMB(ctx, "q"); err != nil || n != 150 {
			t.Errorf("TeamVolumeMB = %d, %v; want 150", n, err)
		}
		if n, err := db.TeamVolumeMB(ctx, "nobody"); err != nil || n != 0 {
			t.Errorf("TeamVolumeMB of a team without volumes = %d, %v; want 0", n, err)
		}
	})
}

// TestVolumeQuotaRace: 20 volume creates of 100 MiB racing on two nodes
// against a team's 500 store exactly 5.
func TestVolumeQuotaRace(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		nodes := []*DB{open(t, dsn).ForNode("a"), open(t, dsn).ForNode("b")}
		if err := nodes[0].CreateTeam(ctx, &Team{ID: "q", Name: "q", CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		check := func(tm *Team, used int64) error {
			time.Sleep(20 * time.Millisecond) // widen the window the lock must close
			if used+100 > 500 {
				return errdefs.New(errdefs.ErrResourceExhausted, "team %q: volumes past 500 MiB", tm.Name)
			}
			return nil
		}
		errs := make(chan error, 20)
		start := make(chan struct{})
		for i := range 20 {
			go func() {
				<-start
				v := &Volume{ID: fmt.Sprintf("v%02d", i), Name: fmt.Sprintf("v%02d", i), SizeMB: 100, CreatedAt: time.Now(), Team: "q"}
				errs <- nodes[i%2].CreateVolumeQuota(ctx, v, check)
			}()
		}
		close(start)
		made := 0
		for range 20 {
			switch err := <-errs; {
			case err == nil:
				made++
			case !errors.Is(err, errdefs.ErrResourceExhausted):
				t.Errorf("racing volume create: %v", err)
			}
		}
		if n, err := nodes[1].TeamVolumeMB(ctx, "q"); made != 5 || err != nil || n != 500 {
			t.Errorf("20 racing 100 MiB volumes against 500 MiB: %d made, %d MiB stored (%v); want 5 and 500", made, n, err)
		}
	})
}

// TestReserveSnapshotRace: 20 snapshot reservations racing against a limit
// of 4, split between two nodes (two pools on one database, as two
// servers), store exactly 4; the others are refused by the check. Internal
// snapshots (forks') do not count.
func TestReserveSnapshotRace(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		nodes := []*DB{open(t, dsn).ForNode("a"), open(t, dsn).ForNode("b")}
		if err := nodes[0].CreateTeam(ctx, &Team{ID: "q", Name: "q", CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		// One of sbx's own, which the limit leaves out.
		if err := nodes[0].PutSnapshot(ctx, &Snapshot{ID: "internal", SandboxID: "sb", Template: "base", Kind: "files", State: "ready", Internal: true, CreatedAt: time.Now(), Team: "q"}); err != nil {
			t.Fatal(err)
		}
		check := func(tm *Team, n int64) error {
			time.Sleep(20 * time.Millisecond) // widen the window the lock must close
			if n >= 4 {
				return errdefs.New(errdefs.ErrResourceExhausted, "team %q is at its limit of 4 snapshots", tm.Name)
			}
			return nil
		}
		errs := make(chan error, 20)
		start := make(chan struct{})
		for i := range 20 {
			go func() {
				<-start
				sn := &Snapshot{ID: fmt.Sprintf("sn%02d", i), SandboxID: "sb", Template: "base", Kind: "files", State: "creating", CreatedAt: time.Now(), Team: "q"}
				errs <- nodes[i%2].ReserveSnapshot(ctx, sn, check)
			}()
		}
		close(start)
		made := 0
		for range 20 {
			switch err := <-errs; {
			case err == nil:
				made++
			case !errors.Is(err, errdefs.ErrResourceExhausted):
				t.Errorf("racing snapshot reservation: %v", err)
			}
		}
		if n, err := nodes[1].TeamSnapshots(ctx, "q"); made != 4 || err != nil || n != 4 {
			t.Errorf("20 racing snapshots against a limit of 4: %d made, %d stored (%v); want 4 and 4", made, n, err)
		}
		// A nil check stores unchecked, as PutSnapshot; a team that does
		// not exist has no limits.
		if err := nodes[0].ReserveSnapshot(ctx, &Snapshot{ID: "free", SandboxID: "sb", Template: "base", Kind: "files", State: "creating", CreatedAt: time.Now(), Team: "nosuch"}, check); err != nil {
			t.Errorf("snapshot of a team without a record: %v", err)
		}
	})
}
