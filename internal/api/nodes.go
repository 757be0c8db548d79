package api

import (
	"context"
	"math"
	"net/http"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// Nodes is what GET /nodes reads: the nodes table and every node's load
// (the server's *store.DB).
type Nodes interface {
	ListNodes(ctx context.Context) ([]*store.Node, error)
	GetNode(ctx context.Context, id string) (*store.Node, error)
	NodeLoads(ctx context.Context) (map[string]store.NodeLoad, error)
	// DeleteNode removes a node that is not live and holds no sandbox
	// that is not settled (errdefs.ErrConflict otherwise).
	DeleteNode(ctx context.Context, id string, now time.Time) error
}

// Drainer drains this node of the fleet (internal/server). A request for
// another node reaches this one only where the fleet could not forward it
// there: it is refused.
type Drainer interface {
	// Drain marks node draining and moves its sandboxes (see
	// wire.NodeDrain), returning when it is done.
	Drain(ctx context.Context, node string) (*wire.NodeDrain, error)
	// SetStatus marks node "draining" (and starts a drain in the
	// background) or "ready".
	SetStatus(ctx context.Context, node, status string) error
}

// clusterID is the clusterID of every node: the nodes sharing one database
// are one cluster, and sbx has no other.
const clusterID = "00000000-0000-0000-0000-000000000000"

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) error {
	out := []wire.Node{}
	if s.cfg.Nodes == nil {
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	nodes, err := s.cfg.Nodes.ListNodes(r.Context())
	if err != nil {
		return err
	}
	loads, err := s.cfg.Nodes.NodeLoads(r.Context())
	if err != nil {
		return err
	}
	for _, n := range nodes {
		out = append(out, s.nodeOut(n, loads[n.ID]))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Nodes == nil {
		return errdefs.New(errdefs.ErrNotFound, "node %q not found", r.PathValue("nodeID"))
	}
	n, err := s.cfg.Nodes.GetNode(r.Context(), r.PathValue("nodeID"))
	if err != nil {
		return err
	}
	loads, err := s.cfg.Nodes.NodeLoads(r.Context())
	if err != nil {
		return err
	}
	o := s.nodeOut(n, loads[n.ID])
	writeJSON(w, http.StatusOK, wire.NodeDetail{
		ID: o.ID, ServiceInstanceID: o.ServiceInstanceID, ClusterID: o.ClusterID, Status: o.Status, StatusChangedAt: o.StatusChangedAt,
		SandboxCount: o.SandboxCount, Metrics: o.Metrics, CreateSuccesses: o.CreateSuccesses, CreateFails: o.CreateFails,
		Version: o.Version, Commit: o.Commit, MachineInfo: o.MachineInfo,
	})
	return nil
}

// deleteNode serves DELETE /nodes/{nodeID}: `sbx node rm`.
func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Nodes == nil {
		return errdefs.New(errdefs.ErrNotFound, "node %q not found", r.PathValue("nodeID"))
	}
	if err := s.cfg.Nodes.DeleteNode(r.Context(), r.PathValue("nodeID"), time.Now()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// drainNode answers POST /nodes/{nodeID}/drain (sbx's own): the drain,
// once done.
func (s *Server) drainNode(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Drainer == nil {
		return errdefs.New(errdefs.ErrConflict, "this server is not a node of a fleet (--advertise): there is nowhere to drain node %q to", r.PathValue("nodeID"))
	}
	res, err := s.cfg.Drainer.Drain(r.Context(), r.PathValue("nodeID"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// setNodeStatus answers the spec's POST /nodes/{nodeID}: "draining"
// starts a drain, "ready" ends one; the spec's other statuses are the
// fleet's to report, not a client's to set.
func (s *Server) setNodeStatus(w http.ResponseWriter, r *http.Request) error {
	var body wire.NodeStatusChange
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	if body.ClusterID != "" && body.ClusterID != clusterID {
		return errdefs.New(errdefs.ErrNotFound, "cluster %q not found", body.ClusterID)
	}
	switch body.Status {
	case "draining", "ready":
	case "connecting", "unhealthy", "standby":
		return errdefs.New(errdefs.ErrInvalidArgument, "status %q is reported by the fleet, not set: want draining or ready", body.Status)
	default:
		return errdefs.New(errdefs.ErrInvalidArgument, "invalid status %q: want draining or ready", body.Status)
	}
	if s.cfg.Drainer == nil {
		return errdefs.New(errdefs.ErrConflict, "this server is not a node of a fleet (--advertise): node %q has no status to change", r.PathValue("nodeID"))
	}
	if err := s.cfg.Drainer.SetStatus(r.Context(), r.PathValue("nodeID"), body.Status); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// nodeOut is node n as the API shows it: ready while its lease holds
// (draining once marked so); once it ran out, lost when the fleet declared
// it so (its sandboxes ended), gone when it released its lease on a clean
// stop (its sandboxes wait for it), unhealthy until one or the other.
func (s *Server) nodeOut(n *store.Node, load store.NodeLoad) wire.Node {
	status, changed := "ready", n.StartedAt
	switch {
	case time.Now().Before(n.LeaseUntil) && n.LostAt.IsZero():
		if !n.DrainingSince.IsZero() {
			status, changed = "draining", n.DrainingSince
		}
	case !n.LostAt.IsZero():
		status, changed = "lost", n.LostAt
	case !n.ReleasedAt.IsZero():
		status, changed = "gone", n.ReleasedAt
	default:
		status, changed = "unhealthy", n.LeaseUntil
	}
	m := n.Machine
	disks := make([]wire.DiskMetrics, 0, len(m.Disks))
	for _, d := range m.Disks {
		disks = append(disks, wire.DiskMetrics{MountPoint: d.MountPoint, Device: d.Device, FilesystemType: d.FilesystemType, UsedBytes: d.UsedBytes, TotalBytes: d.TotalBytes})
	}
	return wire.Node{
		ID: n.ID, ServiceInstanceID: n.ID + "@" + n.StartedAt.Format(time.RFC3339Nano), ClusterID: clusterID,
		Status: status, StatusChangedAt: changed,
		SandboxCount: load.Running, SandboxStartingCount: load.Starting,
		Metrics: wire.NodeMetrics{
			AllocatedCPU: int64(math.Ceil(load.CPUs)), AllocatedMemoryBytes: load.MemoryMB << 20,
			CPUPercent: m.CPUPercent, MemoryUsedBytes: m.MemoryUsedBytes, CPUCount: m.CPUCount, MemoryTotalBytes: m.MemoryTotalBytes,
			Disks: disks, HugePagesTotal: m.HugePagesTotal, HugePagesUsed: m.HugePagesTotal - m.HugePagesFree,
			HugePagesReserved: m.HugePagesRsvd, HugePageSizeBytes: m.HugePageSize,
		},
		Version: n.Version, Commit: n.Commit,
		MachineInfo: wire.MachineInfo{CPUFamily: m.CPUFamily, CPUModel: m.CPUModel, CPUModelName: m.CPUModelName, CPUArchitecture: m.CPUArchitecture},
	}
}
