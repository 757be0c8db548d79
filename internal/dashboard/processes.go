package dashboard

import (
	"encoding/json"
	"net/http"

	pb "github.com/sbxdev/sbx/gen/process"
	"github.com/sbxdev/sbx/wire"
)

// processes serves GET /dashboard/api/sandboxes/{id}/processes: the
// processes the agent started (envd's List).
func (s *Server) processes(w http.ResponseWriter, r *http.Request, id string) error {
	b, err := s.agents.running(r.Context(), id)
	if err != nil {
		return err
	}
	resp, err := b.process().List(r.Context(), request(b, &pb.ListRequest{}))
	if err != nil {
		return agentError(err, "list processes")
	}
	out := make([]wire.DashboardProcess, 0, len(resp.Msg.GetProcesses()))
	for _, p := range resp.Msg.GetProcesses() {
		c := p.GetConfig()
		args := c.GetArgs()
		if args == nil {
			args = []string{}
		}
		out = append(out, wire.DashboardProcess{PID: p.GetPid(), Cmd: c.GetCmd(), Args: args, Cwd: c.GetCwd(), Tag: p.GetTag()})
	}
	writeJSON(w, out)
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}
