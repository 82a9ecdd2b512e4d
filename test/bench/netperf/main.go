// Command netperf is the network benchmark's server: it serves TCP and UDP
// transfers and request/response round trips on one address, driven by the
// bench (the client, in a peer namespace on the host) over TCP. The same
// static binary runs in a host namespace, in a container in a VM and as the
// /init of a bare guest (no agent, no container), so that each figure has
// its floor measured with the same code.
//
//	netperf serve ADDR        serve until a client sends "quit"
//	netperf                   as PID 1: bring lo and the first NIC up with
//	                          the address netperf.addr=IP/LEN of the kernel
//	                          command line, serve on IP:5201, power off on quit
//
// Each TCP connection starts with one command line:
//
//	sink           read to EOF, then reply "N\n" (the bytes read)
//	source N       write N bytes, then close
//	echo           echo every read back until EOF (round trips)
//	udpsend A N S  send N datagrams of S bytes to A from the UDP socket, reply "ok\n"
//	udpstat        reply "BYTES FIRST_NS LAST_NS\n" of the datagrams received
//	               on the UDP socket since the last udpstat, then reset
//	procstat       reply the guest's /proc/stat cpu line and /proc/net/snmp Tcp
//	               lines, then close (where the guest's CPU went)
//	quit           stop serving
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "serve" {
		if err := serve(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "netperf:", err)
			os.Exit(1)
		}
		return
	}
	if os.Getpid() == 1 {
		err := initGuest()
		if err != nil {
			fmt.Fprintln(os.Stderr, "netperf init:", err)
		}
		syscall.Sync()
		syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	}
	fmt.Fprintln(os.Stderr, "usage: netperf serve ADDR")
	os.Exit(2)
}

type udpCounter struct {
	mu          sync.Mutex
	bytes       int64
	first, last time.Time
}

func serve(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	defer l.Close()
	uc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	defer uc.Close()
	uc.(*net.UDPConn).SetReadBuffer(4 << 20)
	var cnt udpCounter
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			now := time.Now()
			cnt.mu.Lock()
			if cnt.bytes == 0 {
				cnt.first = now
			}
			cnt.bytes += int64(n)
			cnt.last = now
			cnt.mu.Unlock()
		}
	}()
	quit := make(chan struct{})
	var once sync.Once
	go func() {
		<-quit
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			select {
			case <-quit:
				return nil
			default:
				return err
			}
		}
		go func() {
			defer c.Close()
			if handle(c, uc.(*net.UDPConn), &cnt) {
				once.Do(func() { close(quit) })
			}
		}()
	}
}

// handle serves one connection; it reports whether the client said quit.
func handle(c net.Conn, uc *net.UDPConn, cnt *udpCounter) bool {
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return false
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return false
	}
	switch f[0] {
	case "sink":
		n, _ := io.Copy(io.Discard, r)
		fmt.Fprintf(c, "%d\n", n)
	case "source":
		if len(f) != 2 {
			return false
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		buf := make([]byte, 256<<10)
		for n > 0 {
			w, err := c.Write(buf[:min(n, int64(len(buf)))])
			if err != nil {
				return false
			}
			n -= int64(w)
		}
	case "echo":
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if err != nil {
				return false
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return false
			}
		}
	case "udpsend":
		if len(f) != 4 {
			return false
		}
		to, err := net.ResolveUDPAddr("udp", f[1])
		n, _ := strconv.Atoi(f[2])
		size, _ := strconv.Atoi(f[3])
		if err != nil || size <= 0 || size > 65000 {
			fmt.Fprintf(c, "bad udpsend %q\n", line)
			return false
		}
		buf := make([]byte, size)
		for range n {
			// A full socket buffer drops or blocks; either way go on.
			uc.WriteToUDP(buf, to)
		}
		fmt.Fprintf(c, "ok\n")
	case "udpstat":
		cnt.mu.Lock()
		fmt.Fprintf(c, "%d %d %d\n", cnt.bytes, cnt.first.UnixNano(), cnt.last.UnixNano())
		cnt.bytes = 0
		cnt.mu.Unlock()
	case "procstat":
		st, _ := os.ReadFile("/proc/stat")
		line, _, _ := strings.Cut(string(st), "\n")
		fmt.Fprintln(c, line)
		snmp, _ := os.ReadFile("/proc/net/snmp")
		for _, l := range strings.Split(string(snmp), "\n") {
			if strings.HasPrefix(l, "Tcp:") {
				fmt.Fprintln(c, l)
			}
		}
	case "quit":
		return true
	}
	return false
}
