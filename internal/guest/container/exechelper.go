package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/exeseal"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The exec helper (docs/features.md, "Exec"): a container's execs are
// forked by a small process of the container itself, started once (at
// the first exec) through libcontainer like any exec, so it is in the
// container's namespaces, cgroup and root, with the container process's
// user, capabilities, seccomp filter, no_new_privs, AppArmor and SELinux
// labels. It is the agent's own binary run as "<exe> vc-exec-helper",
// from the sealed copy libcontainer's exeseal makes (the container cannot
// reach the agent's file through it). Per exec the agent sends it the
// process (args, env, cwd, terminal) and the stdio pipes over a
// socketpair; it does what libcontainer's init would do last (env, chdir,
// PATH lookup, a terminal), then clone(CLONE_PARENT) + execve: the
// process is the agent's child, reaped by the agent's reaper like any
// libcontainer process, so its exit status comes from the kernel, not
// from the helper. It answers with a pidfd of the process (and the
// terminal master), from which the agent reads the pid and checks that
// the process is its own child.
//
// The fast path is taken only when the exec's process asks for nothing
// the helper does not already have (processEligible); otherwise, and
// once the helper is gone or misbehaved, libcontainer's exec is used.

// ExecHelperArg is the hidden argument that makes vc-agent run as a
// container's exec helper (RunExecHelper).
const ExecHelperArg = "vc-exec-helper"

// The helper's descriptors: the sealed binary libcontainer executes (it
// stays open in the helper only until it re-executes itself, as
// /proc/self/exe, under its name) and its end of the socketpair.
const (
	helperExeFd  = 3
	helperSockFd = 4
)

// helperMsgMax bounds a request or response on the socketpair; a larger
// request (a huge environment) takes libcontainer's path.
const helperMsgMax = 128 << 10

// helperTimeout bounds one request: a helper stopped (SIGSTOP, ptrace)
// or frozen in between is retired after it.
const helperTimeout = 10 * time.Second

type helperRequest struct {
	Args     []string `json:"args"`
	Env      []string `json:"env"` // null: no environment at all (libcontainer's nil)
	Cwd      string   `json:"cwd"`
	Terminal bool     `json:"terminal,omitempty"`
	Rows     uint16   `json:"rows,omitempty"`
	Cols     uint16   `json:"cols,omitempty"`
}

type helperResponse struct {
	// ExecErr: the process could not be started, for the reason its
	// exec would have failed under libcontainer (same words: the same
	// exec.LookPath); Err: the helper itself failed.
	ExecErr string `json:"exec_err,omitempty"`
	Err     string `json:"err,omitempty"`
	// Started: with Err, the process had been started (and was
	// killed).
	Started bool `json:"started,omitempty"`
	// Steps is how long the helper's steps took, for the debug log.
	Steps string `json:"steps,omitempty"`
}

// errHelper marks a failure of the helper rather than of the exec, with
// nothing started: the exec may take libcontainer's path instead.
// errHelperLost is a failure after the helper may have started the
// process (it died or misbehaved before answering): the exec fails
// rather than risk running the command twice.
var (
	errHelper     = errors.New("exec helper")
	errHelperLost = errors.New("exec helper failed while starting the process, which may have run")
)

// execHelper is the agent's side of a running helper.
type execHelper struct {
	mu   sync.Mutex // one request at a time
	fd   int        // the agent's end of the socketpair, blocking, with timeouts
	pid  int
	done chan struct{} // closed when the helper exited
}

// helperState is a container's helper, or why it has none.
type helperState struct {
	mu sync.Mutex
	h  *execHelper
	// starting: the helper is being started (in the background).
	starting bool
	// off: the helper is not used any more (it failed to start, exited,
	// misbehaved, the container is being removed); the reason was
	// logged.
	off string
	// refused are the reasons an exec took libcontainer's path that
	// were logged already (once each).
	refused map[string]bool
}

// processEligible tells whether the helper can start sp as libcontainer
// would: what libcontainer's exec sets up beyond args, env, cwd and the
// terminal must be what the helper already has, the container's own
// process settings. It returns why not, or "".
func (c *Container) processEligible(sp *specs.Process) string {
	ip := c.spec.Process
	cfg := c.lc.Config()
	switch {
	case cfg.Namespaces.Contains(configs.NEWUSER):
		return "the container has a user namespace"
	case cfg.Seccomp != nil && cfg.Seccomp.ListenerPath != "":
		return "the seccomp profile has a listener"
	case sp.User.UID != ip.User.UID || sp.User.GID != ip.User.GID || !slices.Equal(sp.User.AdditionalGids, ip.User.AdditionalGids):
		return "the user differs from the container's"
	case sp.Capabilities != nil && !capsEqual(sp.Capabilities, ip.Capabilities):
		return "the capabilities differ from the container's"
	case sp.NoNewPrivileges != ip.NoNewPrivileges:
		return "no_new_privileges differs from the container's"
	case sp.ApparmorProfile != "" && sp.ApparmorProfile != ip.ApparmorProfile:
		return "the AppArmor profile differs from the container's"
	case sp.SelinuxLabel != "" && sp.SelinuxLabel != ip.SelinuxLabel:
		return "the SELinux label differs from the container's"
	case sp.Rlimits != nil && !slices.Equal(sp.Rlimits, ip.Rlimits):
		return "the rlimits differ from the container's"
	case sp.OOMScoreAdj != nil && (ip.OOMScoreAdj == nil || *sp.OOMScoreAdj != *ip.OOMScoreAdj):
		return "oom_score_adj differs from the container's"
	case sp.Scheduler != nil || sp.IOPriority != nil || sp.ExecCPUAffinity != nil || cfg.ExecCPUAffinity != nil:
		return "a scheduler, I/O priority or exec CPU affinity is set"
	}
	return ""
}

// capsEqual compares capability sets, an empty set and none alike.
func capsEqual(a, b *specs.LinuxCapabilities) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.Bounding, b.Bounding) && slices.Equal(a.Effective, b.Effective) &&
		slices.Equal(a.Inheritable, b.Inheritable) && slices.Equal(a.Permitted, b.Permitted) &&
		slices.Equal(a.Ambient, b.Ambient)
}

// helperFor returns the container's running helper; nil when it has
// none ready. The first call starts it in the background: the exec that
// asked, and those that come before it is ready, take libcontainer's
// path, so no exec waits for the helper's start (hundreds of
// milliseconds under TCG: libcontainer's exec, then the agent binary's
// Go runtime twice).
func (c *Container) helperFor() *execHelper {
	hs := &c.helper
	hs.mu.Lock()
	defer hs.mu.Unlock()
	switch {
	case hs.off != "", hs.starting:
		return nil
	case hs.h != nil:
		select {
		case <-hs.h.done:
			hs.off = "the exec helper exited"
			c.log.Info("exec helper: using libcontainer's exec from now on", "reason", hs.off, "pid", hs.h.pid)
			hs.h.close()
			hs.h = nil
			return nil
		default:
			return hs.h
		}
	}
	// Not before the container runs (an exec into a created container,
	// whose init waits for Start): a later exec starts it.
	if st, err := c.lc.Status(); err != nil || st != libcontainer.Running {
		return nil
	}
	hs.starting = true
	go c.startHelperAsync()
	return nil
}

func (c *Container) startHelperAsync() {
	t := time.Now()
	h, err := c.startHelper()
	hs := &c.helper
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.starting = false
	switch {
	case err != nil:
		hs.off = "the exec helper did not start: " + err.Error()
		c.log.Warn("exec helper: using libcontainer's exec", "reason", hs.off)
	case hs.off != "":
		// The container is being removed.
		h.kill()
		h.close()
	default:
		c.log.Info("exec helper started", "pid", h.pid, "took", time.Since(t))
		hs.h = h
	}
}

// retireHelper stops using h (it failed or misbehaved) and kills it.
func (c *Container) retireHelper(h *execHelper, reason error) {
	hs := &c.helper
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.h != h {
		return
	}
	hs.h = nil
	hs.off = reason.Error()
	c.log.Warn("exec helper: using libcontainer's exec from now on", "reason", hs.off, "pid", h.pid)
	h.kill()
	h.close()
}

// noteRefused logs once per reason that an exec took libcontainer's path.
func (c *Container) noteRefused(reason string) {
	hs := &c.helper
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.refused[reason] {
		return
	}
	if hs.refused == nil {
		hs.refused = map[string]bool{}
	}
	hs.refused[reason] = true
	c.log.Info("exec helper not used for this process: libcontainer's exec", "reason", reason)
}

// startHelper starts the helper through libcontainer, as an exec of the
// container's own process settings.
func (c *Container) startHelper() (_ *execHelper, retErr error) {
	// Not while the container is being removed (Remove holds lifecycle
	// exclusively to mark it so).
	c.lifecycle.RLock()
	defer c.lifecycle.RUnlock()
	c.mu.Lock()
	removing := c.removing
	c.mu.Unlock()
	if removing {
		return nil, errors.New("the container is being removed")
	}
	if st, err := c.lc.Status(); err != nil || st != libcontainer.Running {
		return nil, fmt.Errorf("the container is not running (%v, %v)", st, err)
	}
	exe, err := exeseal.CloneSelfExe(filepath.Join(c.m.cfg.Root, c.id))
	if err != nil {
		return nil, fmt.Errorf("seal the agent binary: %w", err)
	}
	defer exe.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	child := os.NewFile(uintptr(fds[1]), "exec-helper-sock")
	defer child.Close()
	defer func() {
		if retErr != nil {
			unix.Close(fds[0])
		}
	}()
	tv := unix.NsecToTimeval(helperTimeout.Nanoseconds())
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(fds[0], unix.SOL_SOCKET, opt, &tv); err != nil {
			return nil, err
		}
	}

	sp := *c.spec.Process
	sp.Args = []string{"/proc/self/fd/" + strconv.Itoa(helperExeFd), ExecHelperArg}
	sp.Env = []string{}
	sp.Cwd = "/"
	sp.Terminal = false
	sp.ConsoleSize = nil
	lp, err := newProcess("process", &sp, false)
	if err != nil {
		return nil, err
	}
	lp.ExtraFiles = []*os.File{exe, child}

	h := &execHelper{fd: fds[0], done: make(chan struct{})}
	r := c.m.reaper
	var exit <-chan int
	r.Lock()
	err = c.lc.Start(lp)
	if err == nil {
		h.pid, err = lp.Pid()
		if err == nil {
			exit = r.Watch(h.pid)
		}
	}
	r.Unlock()
	// The helper has its own copies now. The agent's copy of the
	// helper's end must go before the first round trip: held open, a
	// helper that dies (its container's init killed meanwhile, which
	// kills its PID namespace) would not end the read, and the round
	// trip would wait out helperTimeout with the container's lifecycle
	// held (its removal, and so its exit as podman sees it, 10 s late).
	child.Close()
	exe.Close()
	if err != nil {
		return nil, err
	}
	go func() {
		st := <-exit
		c.log.Info("exec helper exited", "pid", h.pid, "status", st)
		close(h.done)
	}()
	// A first round trip: the helper is up and speaks the protocol.
	if _, _, err := h.call(&helperRequest{}, nil); err != nil {
		h.kill()
		return nil, err
	}
	return h, nil
}

func (h *execHelper) kill() {
	// The pid cannot be reused before the reaper collected it, which
	// closes done.
	select {
	case <-h.done:
	default:
		_ = unix.Kill(h.pid, unix.SIGKILL)
	}
}

// call sends one request with files and returns the response and the
// descriptors that came with it. An error is the helper's: errHelper
// when the request was not sent or the helper says it started nothing,
// else errHelperLost.
func (h *execHelper) call(req *helperRequest, files []*os.File) (*helperResponse, []int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(h.fd, b, oob, nil, 0); err != nil {
		return nil, nil, fmt.Errorf("%w: send: %w", errHelper, err)
	}
	buf := make([]byte, helperMsgMax)
	oobBuf := make([]byte, unix.CmsgSpace(4*4))
	var n, oobn, flags int
	for {
		n, oobn, flags, _, err = unix.Recvmsg(h.fd, buf, oobBuf, unix.MSG_CMSG_CLOEXEC)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: receive: %w", errHelperLost, err)
	}
	fds, ferr := parseRights(oobBuf[:oobn])
	bad := func(format string, args ...any) (*helperResponse, []int, error) {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, nil, fmt.Errorf("%w: %s", errHelperLost, fmt.Sprintf(format, args...))
	}
	switch {
	case n == 0:
		return bad("closed its socket")
	case ferr != nil:
		return bad("bad control message: %v", ferr)
	case flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0:
		return bad("message truncated")
	}
	var resp helperResponse
	if err := json.Unmarshal(buf[:n], &resp); err != nil {
		return bad("bad response: %v", err)
	}
	if resp.Err != "" {
		if resp.Started {
			return bad("%s", resp.Err)
		}
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, nil, fmt.Errorf("%w: %s", errHelper, resp.Err)
	}
	return &resp, fds, nil
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		r, err := unix.ParseUnixRights(&m)
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return nil, err
		}
		fds = append(fds, r...)
	}
	return fds, nil
}

// startWithHelper starts sp as p through the helper. An error wrapping
// errHelper means the helper failed and nothing was started,
// errHelperLost that it failed after it may have started the process;
// any other is the exec's own (a missing command).
func (p *Process) startWithHelper(h *execHelper, sp *specs.Process) (err error) {
	t0 := time.Now()
	req := &helperRequest{Args: sp.Args, Env: sp.Env, Cwd: sp.Cwd, Terminal: sp.Terminal}
	if req.Cwd == "" {
		req.Cwd = "/"
	}
	if sp.ConsoleSize != nil {
		req.Rows = uint16(min(sp.ConsoleSize.Height, 0xffff))
		req.Cols = uint16(min(sp.ConsoleSize.Width, 0xffff))
	}
	var files []*os.File
	if !sp.Terminal {
		io, in, out, errw, err := newPipes()
		if err != nil {
			return err
		}
		p.io = io
		defer func() {
			p.io.closeChildEnds()
			if err != nil {
				p.io.close()
				p.io = nil
			}
		}()
		files = []*os.File{in, out, errw}
		// As libcontainer's init does for a user other than root: the
		// process may reopen its stdio (/dev/stdout).
		if uid := int(sp.User.UID); uid != 0 {
			for _, f := range files {
				if err := f.Chown(uid, -1); err != nil {
					return fmt.Errorf("chown stdio: %w", err)
				}
			}
		}
	}

	var exit <-chan int
	var master *os.File
	r := p.c.m.reaper
	func() {
		r.Lock()
		defer r.Unlock()
		t := time.Now()
		var resp *helperResponse
		var tAfter time.Time
		defer func() {
			steps := ""
			if resp != nil {
				steps = resp.Steps
			}
			p.c.log.Debug("exec helper start", "exec_id", p.execID, "took", tAfter.Sub(t), "steps", steps,
				"pipes", t.Sub(t0), "after", time.Since(tAfter))
		}()
		var fds []int
		resp, fds, err = h.call(req, files)
		tAfter = time.Now()
		if err != nil {
			return
		}
		if resp.ExecErr != "" {
			for _, fd := range fds {
				unix.Close(fd)
			}
			err = commandError(fmt.Errorf("unable to start container process: %s", resp.ExecErr))
			return
		}
		want := 1
		if sp.Terminal {
			want = 2
		}
		if len(fds) != want {
			for _, fd := range fds {
				unix.Close(fd)
			}
			err = fmt.Errorf("%w: sent %d descriptors, want %d", errHelperLost, len(fds), want)
			return
		}
		pidfd := fds[0]
		if sp.Terminal {
			master = os.NewFile(uintptr(fds[1]), "pty-master")
		}
		var pid int
		pid, err = childOfPidfd(pidfd)
		if err == nil && r.Watching(pid) {
			// Another process of the agent's (a container's init,
			// another exec): a helper that names one is not trusted,
			// and the process is left alone.
			unix.Close(pidfd)
			if master != nil {
				master.Close()
				master = nil
			}
			err = fmt.Errorf("%w: it named process %d, which the agent watches already", errHelperLost, pid)
			return
		}
		if err != nil {
			// Whatever it is, it is not ours to watch.
			_ = unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
			unix.Close(pidfd)
			if master != nil {
				master.Close()
				master = nil
			}
			err = fmt.Errorf("%w: %w", errHelperLost, err)
			return
		}
		p.pid, p.pidfd = pid, pidfd
		exit = r.Watch(pid)
	}()
	if err != nil {
		return err
	}
	if sp.Terminal {
		p.io, err = newTerminal(master)
		if err != nil {
			p.io = &stdio{stdout: newClosedStream(), stderr: newClosedStream()}
			p.kill()
			go p.waitExit(exit)
			// The process was started: not a helper failure.
			return fmt.Errorf("receive terminal: %w", err)
		}
	}
	go p.waitExit(exit)
	return nil
}

// childOfPidfd returns the pid (in the agent's PID namespace) of the
// process pidfd refers to, checking that it is the agent's child, so
// that the reaper collects it; the caller checks that no one watches it
// yet. A helper taken over from inside the container (ptrace needs
// CAP_SYS_PTRACE there) cannot make the agent watch or signal a process
// of its choosing that the agent tracks or that is not the agent's own.
func childOfPidfd(pidfd int) (int, error) {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(pidfd))
	if err != nil {
		return 0, err
	}
	pid := -1
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Pid:"); ok {
			pid, err = strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return 0, fmt.Errorf("pidfd fdinfo: Pid: %w", err)
			}
			break
		}
	}
	if pid <= 0 {
		return 0, fmt.Errorf("descriptor %d is not a pidfd of a live process", pidfd)
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid ...: comm may hold anything, ")" included.
	i := strings.LastIndexByte(string(stat), ')')
	fields := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(fields) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: ppid: %w", pid, err)
	}
	if ppid != os.Getpid() {
		return 0, fmt.Errorf("process %d is not the agent's child (parent %d)", pid, ppid)
	}
	return pid, nil
}

// close releases the agent's end of the helper's socket.
func (h *execHelper) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fd >= 0 {
		unix.Close(h.fd)
		h.fd = -1
	}
}

// closeHelper stops the container's helper for good: the container is
// being removed.
func (c *Container) closeHelper() {
	hs := &c.helper
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.h != nil {
		hs.h.kill()
		hs.h.close()
		hs.h = nil
	}
	if hs.off == "" {
		hs.off = "the container is being removed"
	}
}

// startExec starts an exec'd process: through the container's exec
// helper when it can, else (and when the helper fails) libcontainer's
// exec.
func (c *Container) startExec(execID string, sp *specs.Process, lp *libcontainer.Process) (*Process, error) {
	if reason := c.processEligible(sp); reason != "" {
		c.noteRefused(reason)
	} else if h := c.helperFor(); h != nil {
		p := newProc(c, execID, false)
		err := p.startWithHelper(h, sp)
		if err == nil {
			c.log.Debug("process started by the exec helper", "exec_id", execID)
			return p, nil
		}
		if errors.Is(err, errHelperLost) {
			c.retireHelper(h, err)
			return nil, err
		}
		if !errors.Is(err, errHelper) {
			return nil, err
		}
		c.retireHelper(h, err)
	}
	p := newProc(c, execID, false)
	return p, p.start(lp, sp.Terminal)
}
