// Command testbin is the one binary of the conformance suite's container
// root filesystem: a multicall program, called by the name of its link
// (/bin/forever, /bin/exit, ...), as small and static as a rootfs needs.
package main

import (
	"bufio"
	"fmt"
	"hash/crc32"
	"io"
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
	default:
		return fmt.Errorf("unknown command")
	}
	return nil
}

// nc [-u] HOST PORT: TCP copies stdin to the connection (then closes its
// write side) and the connection to stdout; UDP sends stdin as one
// datagram and prints the one that answers.
func nc(args []string) error {
	udp := len(args) > 0 && args[0] == "-u"
	if udp {
		args = args[1:]
	}
	if len(args) != 2 {
		return fmt.Errorf("usage: nc [-u] HOST PORT")
	}
	addr := net.JoinHostPort(args[0], args[1])
	if udp {
		c, err := net.DialTimeout("udp", addr, 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		msg, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		if _, err := c.Write(msg); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64<<10)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(buf[:n])
		return err
	}
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(os.Stdout, c)
		done <- err
	}()
	if _, err := io.Copy(c, os.Stdin); err != nil {
		return err
	}
	c.(*net.TCPConn).CloseWrite()
	return <-done
}
