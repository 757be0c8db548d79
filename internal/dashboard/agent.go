package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/sbxdev/sbx/gen/filesystem/filesystemconnect"
	"github.com/sbxdev/sbx/gen/process/processconnect"
	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/sandbox"
)

// agentHostSuffix ends the URL host of a sandbox's agent: the transport
// reads the sandbox's id from the rest and dials its socket, so that each
// sandbox gets its own pool of connections.
const agentHostSuffix = ".agent"

// agents reaches the sandboxes' agents over their sockets, as the data
// plane does (internal/proxy), with the gen/ Connect clients.
type agents struct {
	mgr *sandbox.Manager
	hc  *http.Client
}

func newAgents(mgr *sandbox.Manager) *agents {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				host = addr
			}
			return mgr.DataPlane().DialAgent(ctx, strings.TrimSuffix(host, agentHostSuffix))
		},
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	return &agents{mgr: mgr, hc: &http.Client{Transport: tr}}
}

// box is a running sandbox's agent.
type box struct {
	sb   *sandbox.Sandbox
	a    *agents
	base string
}

// running returns the agent of sandbox id, which must be running: the
// dashboard does not wake a paused sandbox behind the user's back.
func (a *agents) running(ctx context.Context, id string) (*box, error) {
	sb, err := a.mgr.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if sb.State != sandbox.StateRunning {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q is %s, not running: resume it first", id, sb.State)
	}
	return &box{sb: sb, a: a, base: "http://" + sb.ID + agentHostSuffix}, nil
}

func (b *box) process() processconnect.ProcessClient {
	return processconnect.NewProcessClient(b.a.hc, b.base)
}

func (b *box) filesystem() filesystemconnect.FilesystemClient {
	return filesystemconnect.NewFilesystemClient(b.a.hc, b.base)
}

// request wraps msg with the sandbox's access token. It names no user:
// the agent acts as the sandbox's default user.
func request[T any](b *box, msg *T) *connect.Request[T] {
	req := connect.NewRequest(msg)
	req.Header().Set(agentapi.AccessTokenHeader, b.sb.EnvdToken)
	return req
}

// agentError classifies an error of a call to the agent: the agent's own
// refusals keep their class and their message (which the agent makes safe
// to show); anything else is the server's failure.
func agentError(err error, what string) error {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return fmt.Errorf("%s: %w", what, err)
	}
	class := error(nil)
	switch ce.Code() {
	case connect.CodeNotFound:
		class = errdefs.ErrNotFound
	case connect.CodeInvalidArgument:
		class = errdefs.ErrInvalidArgument
	case connect.CodePermissionDenied:
		class = errdefs.ErrPermissionDenied
	case connect.CodeAlreadyExists:
		class = errdefs.ErrConflict
	case connect.CodeFailedPrecondition:
		class = errdefs.ErrFailedPrecondition
	case connect.CodeResourceExhausted:
		class = errdefs.ErrTooLarge
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
	return errdefs.Wrap(class, err, "%s", ce.Message())
}
