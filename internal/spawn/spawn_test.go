package spawn

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

type payload struct {
	Text string `json:"text"`
	Code int    `json:"code"`
}

type codeErr struct {
	code int
	msg  string
}

func (e codeErr) Error() string { return e.msg }
func (e codeErr) ExitCode() int { return e.code }

// The test binary is its own child: argument 1 names what it does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "__child") {
		var p payload
		ready, err := Child(&p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		switch os.Args[1] {
		case "__child-ok":
			// The payload arrived whole: echo it on stdout.
			fmt.Print(p.Text)
			ready.Report(nil)
		case "__child-fail":
			ready.Report(fmt.Errorf("wrapped: %w", codeErr{p.Code, p.Text}))
		case "__child-die":
			fmt.Fprint(os.Stderr, "panic: boom")
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestStartOK(t *testing.T) {
	var out strings.Builder
	// More than an argument may carry.
	text := strings.Repeat("x", 200<<10)
	cmd, err := Start(Options{Args: []string{"__child-ok"}, Payload: payload{Text: text}, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if out.String() != text {
		t.Errorf("the child read %d bytes of payload, want %d", out.Len(), len(text))
	}
}

func TestStartReportsCode(t *testing.T) {
	_, err := Start(Options{Args: []string{"__child-fail"}, Payload: payload{Text: "exec: \"/nope\": not found\nsecond line", Code: 127}})
	var se *Error
	if !errors.As(err, &se) || se.Code != 127 || se.Msg != `wrapped: exec: "/nope": not found second line` {
		t.Fatalf("err = %#v, want code 127 and the message on one line", err)
	}
	_, err = Start(Options{Args: []string{"__child-fail"}, Payload: payload{Text: "no kernel"}})
	if !errors.As(err, &se) || se.Code != 0 || se.Msg != "wrapped: no kernel" {
		t.Fatalf("err = %#v, want no code", err)
	}
}

func TestStartDied(t *testing.T) {
	var log strings.Builder
	_, err := Start(Options{Args: []string{"__child-die"}, Payload: payload{}, Stderr: &log,
		Died: func(cmd *exec.Cmd) string { return "owner process died: " + log.String() }})
	if err == nil || err.Error() != "owner process died: panic: boom" {
		t.Fatalf("err = %v", err)
	}
	_, err = Start(Options{Args: []string{"__child-die"}, Payload: payload{}})
	if err == nil || !strings.Contains(err.Error(), "exit status 2") {
		t.Fatalf("err = %v, want the exit status", err)
	}
}

func TestParseReport(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Error
	}{
		{`error 127: container x: exec: "/nope": stat /nope: no such file`, Error{127, `container x: exec: "/nope": stat /nope: no such file`}},
		{"error: sandbox x: boot: no kernel", Error{0, "sandbox x: boot: no kernel"}},
		{"error: a: b", Error{0, "a: b"}},
		{"error x: y", Error{0, "x: y"}},
		{"garbage", Error{0, "unexpected report: garbage"}},
	} {
		if got := ParseReport(tc.line); *got != tc.want {
			t.Errorf("ParseReport(%q) = %+v, want %+v", tc.line, *got, tc.want)
		}
	}
	// Line and ParseReport agree.
	for _, err := range []error{errors.New("plain: x"), codeErr{126, "not runnable: y"}} {
		got := ParseReport(strings.TrimSpace(Line(err)))
		var c Coder
		want := 0
		if errors.As(err, &c) {
			want = c.ExitCode()
		}
		if got.Msg != err.Error() || got.Code != want {
			t.Errorf("round trip of %v: %+v", err, got)
		}
	}
}
