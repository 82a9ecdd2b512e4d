package e2e

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/virtcontainers/vc/pkg/network/nstest"
)

// DNS through the NAT, without the host's resolver: the test's own DNS
// server answers in the peer namespace (natNetns), and vc runs in a mount
// namespace of its own whose /etc/resolv.conf (the "host's" resolver,
// which passt reads) names a resolver the test chooses. Nothing leaves
// the test's namespaces.

// dnsServer is a DNS server on UDP that knows one name.
type dnsServer struct {
	mu      sync.Mutex
	queries []string // "NAME TYPE" in arrival order
}

// serveDNS answers A queries for name with addr (an empty answer for its
// other types, NXDOMAIN for other names) on addr:53 in the network
// namespace netns, until the test ends.
func serveDNS(t *testing.T, netns, listen, name string, answer netip.Addr) *dnsServer {
	t.Helper()
	var pc net.PacketConn
	ns := nstest.NS{Name: filepath.Base(netns), Path: netns}
	if err := ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp4", net.JoinHostPort(listen, "53"))
		return err
	}); err != nil {
		t.Fatalf("dns server on %s in %s: %v", listen, netns, err)
	}
	t.Cleanup(func() { pc.Close() })
	d := &dnsServer{}
	fqdn := dnsmessage.MustNewName(name + ".")
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			d.mu.Lock()
			d.queries = append(d.queries, q.Name.String()+" "+q.Type.String())
			d.mu.Unlock()
			known := strings.EqualFold(q.Name.String(), fqdn.String())
			rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RCode: dnsmessage.RCodeSuccess}
			if !known {
				rh.RCode = dnsmessage.RCodeNameError
			}
			b := dnsmessage.NewBuilder(nil, rh)
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			if known && q.Type == dnsmessage.TypeA {
				b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: answer.As4()})
			}
			msg, err := b.Finish()
			if err != nil {
				continue
			}
			pc.WriteTo(msg, from)
		}
	}()
	return d
}

// asked tells whether the server was asked for name's A record.
func (d *dnsServer) asked(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, q := range d.queries {
		if strings.EqualFold(q, name+". TypeA") {
			return true
		}
	}
	return false
}

func (d *dnsServer) String() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.queries, ", ")
}

// vcRunResolv is vcRunIn with /etc/resolv.conf naming nameserver in a
// private mount namespace of vc's (and so of its passt's).
func vcRunResolv(t *testing.T, netns, nameserver string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+nameserver+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sh := `mount --bind "$1" /etc/resolv.conf && shift && exec nsenter --net="$@"`
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", sh, "sh", resolv, netns, vcBin, "--state-root", stateRoot, "--data-root", dataRoot}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("vc %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// A container behind the NAT resolves names through 10.0.2.3: by default
// passt sends the queries to the host's resolver (the first nameserver of
// the host's /etc/resolv.conf; passt was told the guest's resolver was
// the upstream, so the queries went nowhere and nslookup timed out), and
// with --dns to the resolver named. The container has docker's
// /etc/hosts (localhost, its hostname at 10.0.2.15) and an /etc/hostname
// that says its hostname.
func TestNATDNS(t *testing.T) {
	own, peer := natNetns(t)
	srv := serveDNS(t, peer, "198.18.0.2", "test.example", netip.MustParseAddr("192.0.2.77"))
	const script = `cat /etc/resolv.conf
for s in "" 10.0.2.3; do
  t0=$(date +%s); timeout 5 nslookup test.example $s; echo "nslookup-rc=$? took=$(( $(date +%s) - t0 ))s"
done
echo "hostname-file=$(cat /etc/hostname) hostname=$(hostname)"
echo "hostname-i=$(hostname -i)"
cat /etc/hosts
mkdir /tmp/www && echo served-on-localhost > /tmp/www/index.html && httpd -p 127.0.0.1:8080 -h /tmp/www
timeout 5 wget -qO- http://localhost:8080/; echo "wget-rc=$?"`

	check := func(t *testing.T, out string) {
		t.Helper()
		for _, want := range []string{
			"nameserver 10.0.2.3",
			"Name:\ttest.example\nAddress: 192.0.2.77",
			"hostname-file=e2e-nat-dns hostname=e2e-nat-dns",
			"hostname-i=10.0.2.15",
			"127.0.0.1\tlocalhost\n",
			"10.0.2.15\te2e-nat-dns\n",
			"served-on-localhost",
			"wget-rc=0",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		// Both lookups (through resolv.conf and naming 10.0.2.3) answer.
		if n := strings.Count(out, "Address: 192.0.2.77"); n != 2 {
			t.Errorf("%d answers from the test's server, want 2:\n%s", n, out)
		}
		if strings.Contains(out, "nslookup-rc=143") || strings.Contains(out, "nslookup-rc=124") {
			t.Errorf("a lookup timed out:\n%s", out)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "nslookup-rc=") {
				t.Log(l)
			}
		}
	}

	t.Run("host-resolver", func(t *testing.T) {
		srv.mu.Lock()
		srv.queries = nil
		srv.mu.Unlock()
		out, errOut, code := vcRunResolv(t, own, "198.18.0.2", "run", "--rm", "--name", "e2e-nat-dns", "busybox", "--", "sh", "-c", script)
		if code != 0 {
			t.Fatalf("run: exit %d\nstdout %s\nstderr %s", code, out, errOut)
		}
		check(t, out)
		if !srv.asked("test.example") {
			t.Errorf("the test's server was not asked; it saw: %s", srv)
		}
		noLeftovers(t, "e2e-nat-dns")
		noPasst(t, "e2e-nat-dns")
	})

	// The "host's" resolver is an address nobody has: only --dns makes
	// the lookups answer.
	t.Run("dns-flag", func(t *testing.T) {
		srv.mu.Lock()
		srv.queries = nil
		srv.mu.Unlock()
		out, errOut, code := vcRunResolv(t, own, "198.18.0.9", "run", "--rm", "--name", "e2e-nat-dns", "--dns", "198.18.0.2", "busybox", "--", "sh", "-c", script)
		if code != 0 {
			t.Fatalf("run: exit %d\nstdout %s\nstderr %s", code, out, errOut)
		}
		check(t, out)
		if !srv.asked("test.example") {
			t.Errorf("the test's server was not asked; it saw: %s", srv)
		}
		noLeftovers(t, "e2e-nat-dns")
		noPasst(t, "e2e-nat-dns")
	})

	// -v binds over the files vc would write: the user's win.
	t.Run("user-files", func(t *testing.T) {
		dir := t.TempDir()
		for name, body := range map[string]string{"hosts": "192.0.2.1\tmine\n", "resolv.conf": "nameserver 192.0.2.53\n"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out, errOut, code := vcRunIn(t, own, "run", "--rm", "--name", "e2e-nat-dns-v", "--hostname", "box",
			"-v", filepath.Join(dir, "hosts")+":/etc/hosts:ro", "-v", filepath.Join(dir, "resolv.conf")+":/etc/resolv.conf:ro",
			"busybox", "--", "sh", "-c", "cat /etc/hosts /etc/resolv.conf; echo hostname-file=$(cat /etc/hostname) hostname=$(hostname)")
		if code != 0 {
			t.Fatalf("run: exit %d\nstdout %s\nstderr %s", code, out, errOut)
		}
		if want := "192.0.2.1\tmine\nnameserver 192.0.2.53\nhostname-file=box hostname=box\n"; out != want {
			t.Errorf("got %q, want %q", out, want)
		}
		noLeftovers(t, "e2e-nat-dns-v")
	})
}
