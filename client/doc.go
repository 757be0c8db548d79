// Package client is the Go SDK for sbx, a self-hosted sandbox runner that
// speaks the E2B protocol.
//
// # Overview
//
// A [Client] talks to one `sbx serve` over HTTP. Its methods cover the
// control plane: creating, listing, inspecting and killing sandboxes
// ([Client.CreateSandbox], [Client.ListSandboxes], [Client.GetSandbox],
// [Client.KillSandbox], [Client.SetTimeout]), API keys
// ([Client.CreateKey], [Client.ListKeys], [Client.DeleteKey]) and
// templates ([Client.ListTemplates], [Client.DeleteTemplate], and builds
// from a Dockerfile: [Client.BuildTemplate], or [Client.StartTemplateBuild]
// with [Client.FollowTemplateBuild] and [Client.GetTemplateBuild]).
//
// A [Sandbox] is a handle on one running sandbox. Its methods use the data
// plane: the E2B envd process protocol (Connect-RPC), proxied by the server to
// the agent inside the sandbox. [Sandbox.Run] runs a shell command to
// completion and collects its output, [Sandbox.Exec] streams a command's output
// as it arrives, and [Sandbox.Start] starts a background [Process] that can be
// fed input, resized (when it has a pseudo-terminal), signalled and waited for.
//
// Errors from the server are [*APIError] values; test their class with
// [errors.Is] and the sentinels [ErrNotFound], [ErrConflict] and the others,
// or with helpers such as [IsNotFound]. A command that exits with a nonzero
// status is not an error of [Sandbox.Run] or [Sandbox.Exec]; see
// [Result.Err].
//
// The JSON bodies the client sends and reads are the types of package
// [github.com/sbxdev/sbx/wire], which the server encodes too; types whose
// shape is the wire's are aliases of them ([TemplateDetail],
// [TemplateBuild], [SnapshotInfo]...), the others are built from them.
//
// # Usage
//
//	c, err := client.FromEnv() // SBX_URL, SBX_API_KEY
//	if err != nil {
//		log.Fatal(err)
//	}
//	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: "base"})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer sb.Kill(context.WithoutCancel(ctx))
//
//	res, err := sb.Run(ctx, "echo hello from $(hostname)", nil)
//	if err != nil {
//		log.Fatal(err)
//	}
//	fmt.Print(res.Stdout)
//
// Sandbox lifetimes: [CreateOptions.Timeout] left zero takes the server's
// default; [NoTimeout] asks for a sandbox that lives until it is killed.
package client
