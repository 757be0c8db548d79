package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/sbxdev/sbx/client"
)

// Create a sandbox, run a shell command in it and kill it.
func Example() {
	ctx := context.Background()
	c, err := client.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: "base", Timeout: 10 * time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Kill(context.WithoutCancel(ctx))

	res, err := sb.Run(ctx, "uname -a", nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := res.Err(); err != nil {
		log.Fatal(err)
	}
	fmt.Print(res.Stdout)
}

// A sandbox with no time limit lives until it is killed.
func ExampleClient_CreateSandbox_noTimeout() {
	ctx := context.Background()
	c := client.New("http://127.0.0.1:49982", os.Getenv("SBX_API_KEY"))
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{
		Timeout:  client.NoTimeout,
		Metadata: map[string]string{"owner": "ci"},
		Env:      map[string]string{"GREETING": "hello"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sb.ID)
}

// List the running sandboxes that carry a metadata pair.
func ExampleClient_ListSandboxes() {
	ctx := context.Background()
	c, err := client.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	sbs, err := c.ListSandboxes(ctx, &client.ListOptions{Metadata: map[string]string{"owner": "ci"}})
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range sbs {
		fmt.Println(s.SandboxID, s.State, s.EndAt)
	}
}

// Errors are classified; a sandbox that is already gone is not a failure
// when the goal is to get rid of it.
func ExampleIsNotFound() {
	ctx := context.Background()
	c, err := client.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	if err := c.KillSandbox(ctx, "sb-gone"); err != nil && !client.IsNotFound(err) {
		log.Fatal(err)
	}
}

// Stream a command's output as it arrives and feed it input.
func ExampleSandbox_Exec() {
	ctx := context.Background()
	c, err := client.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	sb, err := c.ConnectSandbox(ctx, "sb-1234", nil)
	if err != nil {
		log.Fatal(err)
	}
	code, err := sb.Exec(ctx, client.ExecOptions{
		Cmd:    "sort",
		User:   "root",
		Stdin:  strings.NewReader("b\na\n"),
		Stdout: os.Stdout,
		Stderr: os.Stderr,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("exit code", code)
}

// Start a background server, check on it, then stop it.
func ExampleSandbox_Start() {
	ctx := context.Background()
	c, err := client.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	sb, err := c.ConnectSandbox(ctx, "sb-1234", nil)
	if err != nil {
		log.Fatal(err)
	}
	p, err := sb.Start(ctx, client.ExecOptions{
		Cmd:    "python3",
		Args:   []string{"-m", "http.server", "8000"},
		Tag:    "web",
		Stderr: os.Stderr,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("started", p.PID)

	if err := p.Signal(ctx, client.SIGTERM); err != nil {
		log.Fatal(err)
	}
	st, err := p.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.Status)
}
