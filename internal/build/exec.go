package build

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"github.com/sbxdev/sbx/gen/process"
	"github.com/sbxdev/sbx/gen/process/processconnect"
	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/sandbox"
)

// runCommand runs a RUN step's argv in sandbox sb through its agent, as
// user with the build's environment and working directory, streaming its
// output into the log. A nonzero exit is a *StepError with the code.
func (r *run) runCommand(ctx context.Context, sb *sandbox.Sandbox, in Instruction, step int, argv []string, user string) error {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return r.b.mgr.DataPlane().DialAgent(ctx, sb.ID)
		},
	}
	defer tr.CloseIdleConnections()
	pc := processconnect.NewProcessClient(&http.Client{Transport: tr}, "http://agent")

	env := map[string]string{}
	// ARG values are in RUN's environment, ENV's win (as in Docker).
	for k, v := range r.st.Args {
		env[k] = v
	}
	for _, kv := range r.st.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	cfg := &process.ProcessConfig{Cmd: argv[0], Args: argv[1:], Envs: env}
	if wd := r.st.Workdir; wd != "" {
		cfg.Cwd = &wd
	} else if !r.spec.E2B {
		root := "/"
		cfg.Cwd = &root // Docker's default; E2B's is the user's home
	}
	req := connect.NewRequest(&process.StartRequest{Process: cfg})
	req.Header().Set(agentapi.AccessTokenHeader, sb.EnvdToken)
	req.Header().Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":")))
	stream, err := pc.Start(ctx, req)
	if err != nil {
		return agentErr(in, err)
	}
	defer stream.Close()
	out := &lineWriter{emit: func(s string) { r.info(step, "output", s) }}
	errw := &lineWriter{emit: func(s string) { r.info(step, "output", s) }}
	for stream.Receive() {
		ev := stream.Msg().GetEvent()
		switch x := ev.GetEvent().(type) {
		case *process.ProcessEvent_Data:
			switch o := x.Data.GetOutput().(type) {
			case *process.ProcessEvent_DataEvent_Stdout:
				out.Write(o.Stdout)
			case *process.ProcessEvent_DataEvent_Stderr:
				errw.Write(o.Stderr)
			}
		case *process.ProcessEvent_End:
			out.Flush()
			errw.Flush()
			code := int(x.End.GetExitCode())
			if !x.End.GetExited() && code == 0 {
				code = -1
			}
			if code != 0 || !x.End.GetExited() {
				msg := fmt.Sprintf("%s returned exit code %d", in.Cmd, code)
				if !x.End.GetExited() {
					msg = fmt.Sprintf("%s was killed (%s)", in.Cmd, x.End.GetStatus())
				}
				return &StepError{Step: step, Instruction: in.String(), ExitCode: code, Err: errdefs.New(errdefs.ErrFailedPrecondition, "%s", msg)}
			}
			return nil
		}
	}
	out.Flush()
	errw.Flush()
	if err := stream.Err(); err != nil {
		return agentErr(in, err)
	}
	return fmt.Errorf("command stream ended without an exit status")
}

// agentErr classifies the agent's refusal to run a command.
func agentErr(in Instruction, err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) && (ce.Code() == connect.CodeInvalidArgument || ce.Code() == connect.CodeNotFound || ce.Code() == connect.CodePermissionDenied) {
		// No such user, no such directory, no such program: the
		// Dockerfile's doing; the agent's message says which.
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "%s: %s", in.Cmd, ce.Message())
	}
	return fmt.Errorf("command stream: %w", err)
}
