// Command boxinit stands in for sbx-agent in the runc driver's tests: run as
// a box's init, it accepts connections on fd 3 (the listener the driver
// passes) and, for each, reads one JSON request {"args": [...]}, runs it and
// answers {"exit": N, "signal": "...", "output": "..."}.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
)

type request struct {
	Args []string `json:"args"`
}

type response struct {
	Exit   int    `json:"exit"`
	Signal string `json:"signal,omitempty"`
	Output string `json:"output"`
	Err    string `json:"err,omitempty"`
}

func main() {
	l, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "boxinit:", err)
		os.Exit(1)
	}
	fmt.Println("boxinit: listening")
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "boxinit:", err)
			os.Exit(1)
		}
		go serve(c)
	}
}

func serve(c net.Conn) {
	defer c.Close()
	var req request
	if err := json.NewDecoder(c).Decode(&req); err != nil || len(req.Args) == 0 {
		json.NewEncoder(c).Encode(response{Exit: -1, Err: fmt.Sprint("bad request: ", err)})
		return
	}
	cmd := exec.Command(req.Args[0], req.Args[1:]...)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/root"}
	out, err := cmd.CombinedOutput()
	resp := response{Output: string(out)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		resp.Exit = ws.ExitStatus()
		if ws.Signaled() {
			resp.Signal = ws.Signal().String()
		}
	case err != nil:
		resp.Exit, resp.Err = -1, err.Error()
	}
	json.NewEncoder(c).Encode(resp)
}
