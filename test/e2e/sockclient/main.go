// Command sockclient is a unix socket client for the socket proxy tests,
// run inside a container (the test image's busybox nc has no -U): it
// opens two connections to an echo server at once, makes interleaved
// round trips on them, then sends a large payload on one, half-closes it
// and reads the whole echo back. It prints "ok" and the bytes echoed.
// With -hold it makes one round trip, prints "held" and keeps the
// connection open until killed.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	args := os.Args[1:]
	hold := len(args) > 0 && args[0] == "-hold"
	if hold {
		args = args[1:]
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: sockclient [-hold] SOCKET")
		os.Exit(2)
	}
	f := run
	if hold {
		f = holdOpen
	}
	if err := f(args[0]); err != nil {
		fmt.Fprintln(os.Stderr, "sockclient:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	var conns [2]*net.UnixConn
	for i := range conns {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			return err
		}
		defer c.Close()
		conns[i] = c
	}
	total := 0
	// Interleaved: each connection's echo is its own.
	for round := 0; round < 5; round++ {
		for i, c := range conns {
			msg := fmt.Appendf(nil, "conn %d round %d\n", i, round)
			if _, err := c.Write(msg); err != nil {
				return fmt.Errorf("conn %d: write: %w", i, err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil {
				return fmt.Errorf("conn %d: read: %w", i, err)
			}
			if !bytes.Equal(got, msg) {
				return fmt.Errorf("conn %d: echo %q, want %q", i, got, msg)
			}
			total += len(got)
		}
	}
	// A payload larger than a relay chunk, then the half-close reaches
	// the server, whose close ends the echo.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	c := conns[1]
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(big)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("big: read: %w", err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("big: write: %w", err)
	}
	if !bytes.Equal(got, big) {
		return fmt.Errorf("big: echoed %d bytes, want %d the same", len(got), len(big))
	}
	total += len(got)
	fmt.Println("ok", total)
	return nil
}

func holdOpen(path string) error {
	c, err := net.Dial("unix", path)
	if err != nil {
		return err
	}
	msg := []byte("hold\n")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		return fmt.Errorf("echo %q, %v; want %q", got, err, msg)
	}
	fmt.Println("held")
	// Until killed. Not select{}: with nothing else waiting (no timer,
	// no goroutine in the network poller), Go's runtime may call that a
	// deadlock and exit ("all goroutines are asleep").
	for {
		time.Sleep(time.Hour)
	}
}
