// Command sender writes N MiB of zeros to a TCP address in 256 KiB writes:
// the network benchmark's sender, static so that it runs in any rootfs,
// on the host, in a runc container and in a VM alike.
//
//	sender ADDR MIB
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: sender ADDR MIB")
		os.Exit(2)
	}
	mib, err := strconv.Atoi(os.Args[2])
	if err != nil || mib <= 0 {
		fmt.Fprintf(os.Stderr, "sender: MIB %q: want a positive whole number\n", os.Args[2])
		os.Exit(2)
	}
	c, err := net.Dial("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "sender:", err)
		os.Exit(1)
	}
	buf := make([]byte, 256<<10)
	for left := mib << 20; left > 0; {
		n, err := c.Write(buf[:min(left, len(buf))])
		if err != nil {
			fmt.Fprintln(os.Stderr, "sender:", err)
			os.Exit(1)
		}
		left -= n
	}
	if err := c.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "sender:", err)
		os.Exit(1)
	}
}
