// Command starthelper is a static test program put into small imported
// templates by the e2e suite (which have no python or coreutils):
//
//	starthelper serve PORT DELAY   after DELAY, answer every request to
//	                               127.0.0.1:PORT with "hello from start\n"
//	starthelper sleep DURATION     sleep
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: starthelper serve PORT DELAY | sleep DURATION")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "sleep":
		d, err := time.ParseDuration(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		time.Sleep(d)
	case "serve":
		if len(os.Args) > 3 {
			d, err := time.ParseDuration(os.Args[3])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			time.Sleep(d)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("listening")
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(1)
			}
			go answer(c)
		}
	default:
		os.Exit(2)
	}
}

// answer reads a request's head from c and answers it. It reads first, as
// an HTTP server does: a response sent on accept can reach an HTTP client
// before it has sent its request, which Go's transport rejects as an
// unsolicited response on an idle connection. A connection closed without
// a request (a ready-port check) gets nothing.
func answer(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if line == "\r\n" || line == "\n" {
			break
		}
	}
	fmt.Fprint(c, "HTTP/1.0 200 OK\r\nContent-Length: 17\r\n\r\nhello from start\n")
}
