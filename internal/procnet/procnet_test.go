package procnet

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Tables as an x86 kernel writes them: listeners on loopback, wildcard
// and other addresses are found; connected and established sockets,
// other states and unbound UDP sockets are not.
func TestListenersParse(t *testing.T) {
	if !littleEndian() {
		t.Skip("the sample tables are a little-endian kernel's")
	}
	dir := t.TempDir()
	hdr := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	tail := " 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0\n"
	write := func(name string, lines ...string) {
		s := hdr
		for i, l := range lines {
			s += "   " + string(rune('0'+i)) + ": " + l + tail
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("tcp",
		"0100007F:1F90 00000000:0000 0A", // 127.0.0.1:8080
		"00000000:0016 00000000:0000 0A", // 0.0.0.0:22
		"0F02000A:0050 00000000:0000 0A", // 10.0.2.15:80
		"0100007F:1F90 0100007F:C350 01", // established
		"0100007F:1F91 00000000:0000 07") // closed
	write("tcp6",
		"00000000000000000000000000000000:1F92 00000000000000000000000000000000:0000 0A", // [::]:8082
		"00000000000000000000000001000000:1F93 00000000000000000000000000000000:0000 0A", // [::1]:8083
		"0000000000000000FFFF00000100007F:1F94 00000000000000000000000000000000:0000 0A") // ::ffff:127.0.0.1:8084
	write("udp",
		"3500007F:0035 00000000:0000 07", // 127.0.0.53:53
		"0100007F:A000 0100007F:0035 01", // connected
		"0100007F:A001 0100007F:0035 07", // connected, state close
		"00000000:0000 00000000:0000 07") // not bound
	write("udp6",
		"00000000000000000000000000000000:14E9 00000000000000000000000000000000:0000 07") // [::]:5353
	got, err := Listeners(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"tcp/0.0.0.0:22", "tcp/10.0.2.15:80", "tcp/127.0.0.1:8080", "tcp/[::]:8082", "tcp/[::1]:8083", "tcp/127.0.0.1:8084", "udp/127.0.0.53:53", "udp/[::]:5353"}
	var gs []string
	for _, l := range got {
		gs = append(gs, l.String())
	}
	if !slices.Equal(gs, want) {
		t.Fatalf("listeners:\n got %v\nwant %v", gs, want)
	}
	for _, l := range got {
		if lb := l.Localhost(); lb != (l.Port != 80 && l.Port != 53) {
			t.Errorf("%s: Localhost() = %v", l, lb)
		}
	}

	// A bad line is an error naming the file and line.
	os.WriteFile(filepath.Join(dir, "udp"), []byte(hdr+"   0: 3500007F 00000000:0000 07"+tail), 0o600)
	if _, err := Listeners(dir); err == nil || !strings.Contains(err.Error(), "udp: line 2: local address") {
		t.Fatalf("bad line: %v", err)
	}
}

// The running kernel's tables hold this process's listeners.
func TestListenersLive(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	u, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	got, err := Listeners("/proc/self/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []Listener{
		{TCP, netip.MustParseAddr("127.0.0.1"), uint16(l.Addr().(*net.TCPAddr).Port)},
		{UDP, netip.MustParseAddr("127.0.0.1"), uint16(u.LocalAddr().(*net.UDPAddr).Port)},
	} {
		if !slices.Contains(got, want) {
			t.Errorf("%s not among %v", want, got)
		}
	}
}

func littleEndian() bool {
	return binary.NativeEndian.Uint16([]byte{1, 0}) == 1
}
