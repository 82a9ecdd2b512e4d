package owner

import (
	"io"
	"testing"
	"time"
)

// testProcess is a Process whose output copy the test drives: writes
// through out count as copied output, end ends it.
func testProcess() (p *Process, out io.Writer, end func()) {
	p = &Process{done: make(chan struct{}), stop: func() {}}
	return p, &countingWriter{w: io.Discard, n: &p.copied}, func() { close(p.done) }
}

// TestDrainEnded: output that ends is drained, at once.
func TestDrainEnded(t *testing.T) {
	p, out, end := testProcess()
	out.Write([]byte("last words\n"))
	end()
	start := time.Now()
	if !p.Drain(time.Hour) {
		t.Fatal("Drain = false for output that ended")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Drain took %v for output that ended", d)
	}
	if p.copied.Load() != 11 {
		t.Fatalf("copied = %d, want 11", p.copied.Load())
	}
}

// TestDrainIdle: output held open with no progress is given up on after
// about idle; output that makes progress is waited for past idle.
func TestDrainIdle(t *testing.T) {
	const idle = 100 * time.Millisecond
	p, _, _ := testProcess()
	start := time.Now()
	if p.Drain(idle) {
		t.Fatal("Drain = true for output that never ended")
	}
	if d := time.Since(start); d < idle || d > 10*idle {
		t.Fatalf("Drain gave up after %v, want about %v", d, idle)
	}

	p, out, end := testProcess()
	stop := make(chan struct{})
	go func() {
		// Progress for 5 idle periods, then the end.
		tick := time.NewTicker(idle / 4)
		defer tick.Stop()
		for i := 0; i < 20; i++ {
			select {
			case <-tick.C:
				out.Write([]byte("x"))
			case <-stop:
				return
			}
		}
		end()
	}()
	defer close(stop)
	start = time.Now()
	if !p.Drain(idle) {
		t.Fatalf("Drain gave up after %v on output making progress", time.Since(start))
	}
	if d := time.Since(start); d < 3*idle {
		t.Fatalf("Drain returned after %v, before the output ended", d)
	}
}
