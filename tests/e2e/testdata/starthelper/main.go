// Command starthelper is a static test program put into small imported
// templates by the e2e suite (which have no python or coreutils):
//
//	starthelper serve PORT DELAY   after DELAY, answer every connection to
//	                               127.0.0.1:PORT with "hello from start\n"
//	starthelper sleep DURATION     sleep
package main

import (
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
			fmt.Fprint(c, "HTTP/1.0 200 OK\r\nContent-Length: 17\r\n\r\nhello from start\n")
			c.Close()
		}
	default:
		os.Exit(2)
	}
}
