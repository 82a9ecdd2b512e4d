package vc

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/pkg/oci"
)

// Exec starts another process, execID, in the running container.
func (c *Container) Exec(ctx context.Context, execID string, p *specs.Process) (err error) {
	ctx, endSpan := traceOp(ctx, "container.exec", c.s.id, c.id)
	defer func() { endSpan(err) }()
	if p == nil || len(p.Args) == 0 {
		return fmt.Errorf("exec %s: process.args: empty: %w", execID, errdefs.ErrInvalidArgument)
	}
	if err := checkExecSize("exec "+execID+": process", p); err != nil {
		return err
	}
	if _, err := c.live("exec", StateRunning); err != nil {
		return err
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	_, err = c.s.agent.ExecProcess(ctx, &pb.ExecProcessRequest{ContainerId: c.id, ExecId: execID, Process: oci.ProcessToProto(p)})
	return err
}

// WaitProcess waits for a process of the container (the container's id
// for its main process) and returns its exit status: the exit code, or
// 128+N for death by signal N.
func (c *Container) WaitProcess(ctx context.Context, execID string) (int32, error) {
	if err := c.s.running(); err != nil {
		return 255, err
	}
	r, err := c.s.agent.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: c.id, ExecId: execID})
	if err != nil {
		return 255, fmt.Errorf("wait %s/%s: %w", c.id, execID, err)
	}
	c.s.collectSpans(ctx) // the process is over: its spans are in the guest
	return r.Status, nil
}

// SignalProcess sends sig to a process of the container; an empty execID
// means every process of the container.
func (c *Container) SignalProcess(ctx context.Context, execID string, sig uint32) error {
	if _, err := c.live("signal"); err != nil {
		return err
	}
	_, err := c.s.agent.SignalProcess(ctx, &pb.SignalProcessRequest{ContainerId: c.id, ExecId: execID, Signal: sig})
	return err
}

// ResizeTerminal resizes a process's terminal.
func (c *Container) ResizeTerminal(ctx context.Context, execID string, rows, cols uint32) error {
	if err := c.s.running(); err != nil {
		return err
	}
	_, err := c.s.agent.TtyWinResize(ctx, &pb.TtyWinResizeRequest{ContainerId: c.id, ExecId: execID, Row: rows, Column: cols})
	return err
}

// CloseStdin closes a process's standard input.
func (c *Container) CloseStdin(ctx context.Context, execID string) error {
	if err := c.s.running(); err != nil {
		return err
	}
	_, err := c.s.agent.CloseStdin(ctx, &pb.CloseStdinRequest{ContainerId: c.id, ExecId: execID})
	return err
}

// IO is where a process's standard streams go. Nil members are not
// connected. With a terminal, all output comes on Stdout.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// readLen is what one ReadStdout/ReadStderr asks for: the agent's most
// (1 MiB). It answers with what it has buffered, so small outputs do not
// wait, and a fast writer's output crosses in fewer round trips (64 MiB
// of stdout under TCG: 10.3 MiB/s with 32 KiB reads, 12.6 with 1 MiB).
const readLen = 1 << 20

// stdinLen is the most one WriteStdin carries (64 MiB of stdin under
// TCG, make bench: 4.5-5.6 MiB/s with 32 KiB, see the commit for 1 MiB).
const stdinLen = 1 << 20

// IOStream copies a process's standard streams until its output ends.
// Stdin is copied until it ends, then the process's stdin is closed. The
// returned channel receives once all output has been copied.
func (c *Container) IOStream(ctx context.Context, execID string, pio IO) <-chan error {
	done := make(chan error, 1)
	if err := c.s.running(); err != nil {
		done <- err
		return done
	}
	s, cid := c.s, c.id
	if d := s.dataPort(ctx); d != nil {
		return d.ioStream(ctx, cid, execID, pio)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	pump := func(read func(context.Context, *pb.ReadStreamRequest) (*pb.ReadStreamResponse, error), w io.Writer) {
		defer wg.Done()
		for {
			r, err := read(ctx, &pb.ReadStreamRequest{ContainerId: cid, ExecId: execID, Len: readLen})
			if err != nil {
				if !isEOF(err) {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
				return
			}
			if _, err := w.Write(r.Data); err != nil {
				return
			}
		}
	}
	if pio.Stdout != nil {
		wg.Add(1)
		go pump(s.agent.ReadStdout, pio.Stdout)
	}
	if pio.Stderr != nil {
		wg.Add(1)
		go pump(s.agent.ReadStderr, pio.Stderr)
	}
	if pio.Stdin != nil {
		go func() {
			// Large enough that a fast writer's input crosses in few
			// round trips (each WriteStdin waits for the agent).
			buf := make([]byte, stdinLen)
			for {
				n, err := pio.Stdin.Read(buf)
				if n > 0 {
					if _, werr := s.agent.WriteStdin(ctx, &pb.WriteStreamRequest{ContainerId: cid, ExecId: execID, Data: buf[:n]}); werr != nil {
						return
					}
				}
				if err != nil {
					c.CloseStdin(context.WithoutCancel(ctx), execID)
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		done <- errors.Join(errs...)
	}()
	return done
}

// isEOF tells the end of a stream from a failure. The agent reports the
// end of output as an error; see internal/guest for its form.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errdefs.IsNotFound(err) || errdefs.IsOutOfRange(err)
}

// ProcessList lists a running container's processes as `ps`,
// run inside the container with the given options, prints them. The agent
// protocol has no process list: the container's image must have a ps (as
// busybox does), else the error says it is missing.
func (c *Container) ProcessList(ctx context.Context, psArgs ...string) (string, error) {
	cid := c.id
	var id [6]byte
	rand.Read(id[:])
	execID := "ps-" + hex.EncodeToString(id[:])
	p := &specs.Process{Args: append([]string{"ps"}, psArgs...), Env: oci.DefaultEnv, Cwd: "/"}
	if err := c.Exec(ctx, execID, p); err != nil {
		return "", fmt.Errorf("process list of %s: %w", cid, err)
	}
	var out, stderr bytes.Buffer
	streams := c.IOStream(ctx, execID, IO{Stdout: &out, Stderr: &stderr})
	c.CloseStdin(ctx, execID)
	code, err := c.WaitProcess(ctx, execID)
	if err != nil {
		return "", err
	}
	if err := <-streams; err != nil {
		return "", err
	}
	if code != 0 {
		return "", fmt.Errorf("process list of %s: ps exited %d: %s: %w", cid, code, bytes.TrimSpace(stderr.Bytes()), errdefs.ErrFailedPrecondition)
	}
	return out.String(), nil
}
