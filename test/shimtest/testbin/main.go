// Command testbin is the one binary of the conformance suite's container
// root filesystem: a multicall program, called by the name of its link
// (/bin/forever, /bin/exit, ...), as small and static as a rootfs needs.
package main

import (
	"bufio"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if name == "testbin" && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	if err := run(name, args); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func run(name string, args []string) error {
	switch name {
	case "forever":
		// Prints its arguments, then sleeps until killed.
		if len(args) > 0 {
			fmt.Println(strings.Join(args, " "))
		}
		for {
			time.Sleep(time.Hour)
		}
	case "exit":
		code := 0
		if len(args) > 0 {
			c, err := strconv.Atoi(args[0])
			if err != nil {
				return err
			}
			code = c
		}
		os.Exit(code)
	case "echo":
		fmt.Println(strings.Join(args, " "))
	case "cat":
		_, err := io.Copy(os.Stdout, os.Stdin)
		return err
	case "date":
		// date +%s: seconds since the epoch.
		fmt.Println(time.Now().Unix())
	case "tickexit":
		// 50 lines, then exit 7.
		w := bufio.NewWriter(os.Stdout)
		for i := 1; i <= 50; i++ {
			fmt.Fprintf(w, "tick %d\n", i)
		}
		w.Flush()
		os.Exit(7)
	case "burstexit":
		// burstexit SIZE CODE: SIZE bytes of the 0x00..0xff tile, then
		// exit CODE at once.
		if len(args) != 2 {
			return fmt.Errorf("usage: burstexit SIZE CODE")
		}
		size, err := strconv.Atoi(args[0])
		if err != nil {
			return err
		}
		code, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		var tile [64 << 10]byte
		for i := range tile {
			tile[i] = byte(i)
		}
		for size > 0 {
			n := min(size, len(tile))
			if _, err := os.Stdout.Write(tile[:n]); err != nil {
				return err
			}
			size -= n
		}
		os.Exit(code)
	case "memhog":
		// Touches memory until the OOM killer ends it.
		var keep [][]byte
		for {
			b := make([]byte, 4<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		}
	case "ls":
		dir := "."
		if len(args) > 0 {
			dir = args[0]
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			fmt.Println(e.Name())
		}
	case "crc32c":
		// crc32c FILE: the Castagnoli CRC-32 of the file, in hex, and its size.
		if len(args) != 1 {
			return fmt.Errorf("usage: crc32c FILE")
		}
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
		n, err := io.Copy(h, f)
		if err != nil {
			return err
		}
		fmt.Printf("%08x %d\n", h.Sum32(), n)
	case "nc":
		return nc(args)
	case "looptest":
		return looptest(args)
	default:
		return fmt.Errorf("unknown command")
	}
	return nil
}

// nc [-v] -l PORT | nc -u HOST PORT | nc HOST PORT, as shimtest's:
//   - -l listens on tcp4 0.0.0.0:PORT (0 for any), says "Listening on
//     ADDR PORT" on stderr with -v, takes one connection and pipes it as
//     TCP does;
//   - TCP copies stdin to the connection (then closes its write side)
//     and the connection to stdout;
//   - -u sends stdin as one datagram from an unconnected socket
//     (sendto, recvfrom: no connect(2) to lean on) and prints the one
//     that answers.
func nc(args []string) error {
	verbose := len(args) > 0 && args[0] == "-v"
	if verbose {
		args = args[1:]
	}
	usage := fmt.Errorf("usage: nc [-v] -l PORT | nc [-u] HOST PORT")
	switch {
	case len(args) == 2 && args[0] == "-l":
		ln, err := net.Listen("tcp4", net.JoinHostPort("0.0.0.0", args[1]))
		if err != nil {
			return err
		}
		if verbose {
			a := ln.Addr().(*net.TCPAddr)
			fmt.Fprintf(os.Stderr, "Listening on %s %d\n", a.IP, a.Port)
		}
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			return err
		}
		return pipe(c.(*net.TCPConn))
	case len(args) == 3 && args[0] == "-u":
		to, err := net.ResolveUDPAddr("udp", net.JoinHostPort(args[1], args[2]))
		if err != nil {
			return err
		}
		pc, err := net.ListenPacket("udp", ":0")
		if err != nil {
			return err
		}
		defer pc.Close()
		msg, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		if _, err := pc.WriteTo(msg, to); err != nil {
			return err
		}
		pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64<<10)
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(buf[:n])
		return err
	case len(args) == 2:
		c, err := net.DialTimeout("tcp", net.JoinHostPort(args[0], args[1]), 10*time.Second)
		if err != nil {
			return err
		}
		return pipe(c.(*net.TCPConn))
	}
	return usage
}

// pipe copies the connection to stdout and stdin to the connection, then
// closes its write side, until both end.
func pipe(c *net.TCPConn) error {
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(os.Stdout, c)
		done <- err
	}()
	if _, err := io.Copy(c, os.Stdin); err != nil {
		return err
	}
	c.CloseWrite()
	return <-done
}

// looptest TOKEN: listens on a port of 127.0.0.1 (one of 20000-29999, not
// the kernel's pick, as shimtest's), connects to it over 127.0.0.1 from
// the same process, sends TOKEN, and prints what its server echoed.
func looptest(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: looptest TOKEN")
	}
	var ln net.Listener
	var err error
	for i := 0; i < 20 && ln == nil; i++ {
		ln, err = net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+rand.IntN(10000))))
	}
	if ln == nil {
		return err
	}
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		b := make([]byte, 4096)
		n, err := c.Read(b)
		if n == 0 {
			served <- fmt.Errorf("server read: %w", err)
			return
		}
		_, err = c.Write(b[:n])
		served <- err
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, args[0]); err != nil {
		return err
	}
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if string(b[:n]) != args[0] {
		return fmt.Errorf("echo %q (%v), want %q", b[:n], err, args[0])
	}
	fmt.Println(string(b[:n]))
	return <-served
}
