package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"
)

// RunExecHelper is the exec helper's main (exechelper.go): it runs in the
// container, serves the agent's requests on its socket one at a time and
// exits when the agent closes it.
func RunExecHelper() {
	if os.Args[0] != ExecHelperArg {
		// libcontainer executed it as /proc/self/fd/3: once more under
		// its own name, which ps shows (its arguments).
		unix.Close(helperExeFd)
		err := syscall.Exec("/proc/self/exe", []string{ExecHelperArg}, nil)
		fmt.Fprintln(os.Stderr, "vc-exec-helper: re-execute:", err)
		os.Exit(2)
	}
	// ps shows its name; it cannot be ptraced or have its memory read
	// by the container's processes without CAP_SYS_PTRACE (execve makes
	// the processes it starts dumpable again).
	if name, err := unix.BytePtrFromString(ExecHelperArg); err == nil {
		_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(name)), 0, 0, 0)
	}
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	// Signals sent to every process of the container (a kill of the
	// container with a signal other than SIGKILL) do not end it: they
	// are caught and dropped. Caught, not ignored: an ignored signal
	// would stay ignored in the processes it starts.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs)
	go func() {
		for range sigs {
		}
	}()
	if _, err := unix.FcntlInt(helperSockFd, unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		os.Exit(2)
	}
	// Like libcontainer's init, which starts the process with an
	// environment of its own and looks the command up in its PATH.
	os.Clearenv()
	buf := make([]byte, helperMsgMax)
	oob := make([]byte, unix.CmsgSpace(3*4))
	for {
		n, oobn, flags, _, err := unix.Recvmsg(helperSockFd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			os.Exit(0)
		}
		fds, ferr := parseRights(oob[:oobn])
		var resp helperResponse
		var out []int
		var req helperRequest
		switch {
		case ferr != nil:
			resp.Err = "control message: " + ferr.Error()
		case flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0:
			resp.Err = "request truncated"
		default:
			if err := json.Unmarshal(buf[:n], &req); err != nil {
				resp.Err = "request: " + err.Error()
			} else if len(req.Args) > 0 {
				out = helperExec(&req, fds, &resp)
			}
		}
		for _, fd := range fds {
			unix.Close(fd)
		}
		b, _ := json.Marshal(&resp)
		var rights []byte
		if len(out) > 0 {
			rights = unix.UnixRights(out...)
		}
		err = unix.Sendmsg(helperSockFd, b, rights, nil, 0)
		for _, fd := range out {
			unix.Close(fd)
		}
		if err != nil {
			os.Exit(0)
		}
	}
}

// helperExec starts req's process as libcontainer's setns init would
// have executed it (setns_init_linux.go, finalizeNamespace): environment
// (prepareEnv), cwd, PATH lookup, a new session, the terminal as its
// controlling terminal. It returns the descriptors for the agent: a pidfd
// of the process, then the terminal's master.
func helperExec(req *helperRequest, fds []int, resp *helperResponse) []int {
	var stdio []uintptr
	var master, peer int = -1, -1
	defer func() {
		if peer >= 0 {
			unix.Close(peer)
		}
	}()
	if req.Terminal {
		if len(fds) != 0 {
			resp.Err = "a terminal process comes without descriptors"
			return nil
		}
		var err error
		master, peer, err = openPty(req.Rows, req.Cols)
		if err != nil {
			resp.Err = "terminal: " + err.Error()
			return nil
		}
		stdio = []uintptr{uintptr(peer), uintptr(peer), uintptr(peer)}
	} else {
		if len(fds) != 3 {
			resp.Err = fmt.Sprintf("got %d descriptors, want stdin, stdout and stderr", len(fds))
			return nil
		}
		stdio = []uintptr{uintptr(fds[0]), uintptr(fds[1]), uintptr(fds[2])}
	}
	closeMaster := func() {
		if master >= 0 {
			unix.Close(master)
		}
	}
	t0 := time.Now()
	if err := unix.Chdir(req.Cwd); err != nil {
		closeMaster()
		resp.ExecErr = fmt.Sprintf("chdir to cwd (%q) set in config.json failed: %v", req.Cwd, err)
		return nil
	}
	tc := time.Now()
	env, err := prepareEnv(req.Env, os.Getuid())
	if err != nil {
		closeMaster()
		resp.ExecErr = err.Error()
		return nil
	}
	t1 := time.Now()
	name, quick := quickLook(req.Args[0])
	if !quick {
		if name, err = exec.LookPath(req.Args[0]); err != nil {
			os.Unsetenv("PATH")
			closeMaster()
			resp.ExecErr = err.Error()
			return nil
		}
	}
	attr := &syscall.ProcAttr{
		Env:   env,
		Files: stdio,
		Sys: &syscall.SysProcAttr{
			// The agent's child, reaped by it: the exit status comes
			// from the kernel, not from the helper.
			Cloneflags: unix.CLONE_PARENT,
			Setsid:     true,
			Setctty:    req.Terminal,
			Ctty:       0,
		},
	}
	t2 := time.Now()
	pid, err := syscall.ForkExec(name, req.Args, attr)
	if quick && errors.Is(err, unix.EACCES) {
		// What the stat let through, execve refused: exec.LookPath
		// (the access check, the next PATH entry) has the answer.
		again, lerr := exec.LookPath(req.Args[0])
		if lerr != nil {
			os.Unsetenv("PATH")
			closeMaster()
			resp.ExecErr = lerr.Error()
			return nil
		}
		if again != name {
			name = again
			pid, err = syscall.ForkExec(name, req.Args, attr)
		}
	}
	os.Unsetenv("PATH")
	t3 := time.Now()
	if err != nil {
		closeMaster()
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) {
			// Most likely the container's seccomp filter refusing the
			// clone, which libcontainer's path does not need (it
			// forks outside and applies the filter last): the
			// agent falls back to it, which gives the real answer.
			resp.Err = fmt.Sprintf("fork+exec %s: %v", name, err)
			return nil
		}
		resp.ExecErr = (&os.PathError{Op: "exec", Path: name, Err: err}).Error()
		return nil
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		closeMaster()
		resp.Err = fmt.Sprintf("pidfd_open %d: %v", pid, err)
		resp.Started = true
		_ = unix.Kill(pid, unix.SIGKILL)
		return nil
	}
	resp.Steps = fmt.Sprintf("chdir %v, env %v, lookup %v, fork+exec %v, pidfd %v", tc.Sub(t0), t1.Sub(tc), t2.Sub(t1), t3.Sub(t2), time.Since(t3))
	if master >= 0 {
		return []int{pidfd, master}
	}
	return []int{pidfd}
}

// quickLook is exec.LookPath, which libcontainer's init runs, for the
// common case in one stat per PATH entry tried instead of a stat and an
// access check of the one found: on 9p each is a round trip to the host.
// The access check is left to execve; when it refuses (EACCES), the
// caller asks exec.LookPath. It returns false when exec.LookPath must
// decide (not found, not executable by its mode, a relative result).
func quickLook(file string) (string, bool) {
	if strings.Contains(file, "/") {
		return file, executableByMode(file)
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" || !filepath.IsAbs(dir) {
			return "", false
		}
		path := filepath.Join(dir, file)
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return "", false
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Mode&0o111 == 0 {
			return "", false
		}
		return path, true
	}
	return "", false
}

func executableByMode(path string) bool {
	var st unix.Stat_t
	return unix.Stat(path, &st) == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Mode&0o111 != 0
}

// openPty opens a new terminal in the container's /dev/pts, as
// libcontainer's safeAllocPty does, and returns its master and peer.
func openPty(rows, cols uint16) (master, peer int, err error) {
	master, err = unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, -1, err
	}
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(master)
		return -1, -1, fmt.Errorf("unlockpt: %w", err)
	}
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		unix.Close(master)
		return -1, -1, fmt.Errorf("TIOCGPTPEER: %w", errno)
	}
	peer = int(r)
	if rows != 0 && cols != 0 {
		if err := unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
			unix.Close(master)
			unix.Close(peer)
			return -1, -1, fmt.Errorf("resize: %w", err)
		}
	}
	return master, peer, nil
}

// prepareEnv is libcontainer's (env.go), which the helper must follow to
// the letter: it validates the variables, drops duplicates (the last
// wins), sets PATH for the lookup, and adds HOME from the container's
// /etc/passwd when the environment has none.
func prepareEnv(env []string, uid int) ([]string, error) {
	if env == nil {
		return nil, nil
	}
	var homeIsSet bool
	out := make([]string, 0, len(env))
	saw := make(map[string]bool, len(env))
	for n := len(env); n > 0; n-- {
		kv := env[n-1]
		i := strings.IndexByte(kv, '=')
		if i == -1 {
			return nil, errors.New("invalid environment variable: missing '='")
		}
		if i == 0 {
			return nil, errors.New("invalid environment variable: name cannot be empty")
		}
		key, val := kv[:i], kv[i+1:]
		if saw[key] {
			continue
		}
		saw[key] = true
		if strings.IndexByte(kv, 0) >= 0 {
			return nil, fmt.Errorf("invalid environment variable %q: contains nul byte (\\x00)", key)
		}
		if key == "PATH" {
			if err := os.Setenv("PATH", val); err != nil {
				return nil, err
			}
		}
		if key == "HOME" {
			if val != "" {
				homeIsSet = true
			} else {
				continue
			}
		}
		out = append(out, kv)
	}
	slices.Reverse(out)
	if !homeIsSet {
		out = append(out, "HOME="+userHome(uid))
	}
	return out, nil
}

// home caches the helper's user's home directory (the helper serves one
// user), read from /etc/passwd again only after an inotify event in /etc
// (on 9p a stat, let alone a read, is a round trip to the host; a read
// of the inotify descriptor is not). Without inotify, a stat of the file
// tells whether it changed. A change made from the host to a running
// container's /etc on a shared file system raises no event: such a
// change is seen at the next event in /etc.
var home struct {
	uid    int
	dir    string
	good   bool
	st     unix.Stat_t
	notify int // inotify descriptor watching /etc, -1 when none
	tried  bool
}

// userHome is libcontainer's getUserHome: uid's home directory in
// /etc/passwd, "/" when it has none.
func userHome(uid int) string {
	if !home.tried {
		home.tried, home.notify = true, -1
		if fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC); err == nil {
			const mask = unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_CLOSE_WRITE | unix.IN_CREATE | unix.IN_DELETE |
				unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF
			if _, err := unix.InotifyAddWatch(fd, "/etc", mask); err == nil {
				home.notify = fd
			} else {
				unix.Close(fd)
			}
		}
	}
	var st unix.Stat_t
	var statErr error
	if home.notify >= 0 {
		if home.good && home.uid == uid && !drainEvents(home.notify) {
			return home.dir
		}
	} else {
		statErr = unix.Stat("/etc/passwd", &st)
		if statErr == nil && home.good && home.uid == uid && sameFile(&st, &home.st) {
			return home.dir
		}
	}
	dir := "/"
	if u, err := user.LookupUid(uid); err == nil {
		dir = u.Home
	}
	home.uid, home.st, home.dir, home.good = uid, st, dir, statErr == nil
	return dir
}

// drainEvents reads every queued inotify event and tells whether there
// was any (or the queue overflowed, or the read failed).
func drainEvents(fd int) bool {
	var buf [4096]byte
	seen := false
	for {
		n, err := unix.Read(fd, buf[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			return seen
		}
		if err != nil || n <= 0 {
			return true
		}
		seen = true
	}
}

func sameFile(a, b *unix.Stat_t) bool {
	return a.Dev == b.Dev && a.Ino == b.Ino && a.Size == b.Size && a.Mtim == b.Mtim && a.Ctim == b.Ctim
}
