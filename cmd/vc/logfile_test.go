package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readAllLog(t *testing.T, path string) []logRecord {
	t.Helper()
	var recs []logRecord
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := readLog(f, func(r logRecord) { recs = append(recs, r) }); err != nil {
		t.Fatal(err)
	}
	return recs
}

// Lines of each stream are records of their own, a partial line waits for
// its newline (or Flush), and the file rotates past maxLogSize.
func TestContainerLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "container.log")
	l, err := openContainerLog(path)
	if err != nil {
		t.Fatal(err)
	}
	out, errs := l.stream("stdout"), l.stream("stderr")
	out.Write([]byte("one\ntw"))
	errs.Write([]byte("oops\n"))
	out.Write([]byte("o\nthree"))
	out.Flush()
	l.Close()
	recs := readAllLog(t, path)
	var got []string
	for _, r := range recs {
		got = append(got, r.Stream+":"+r.Log)
		if r.Time.IsZero() {
			t.Errorf("record without time: %+v", r)
		}
	}
	if want := "stdout:one\n|stderr:oops\n|stdout:two\n|stdout:three"; strings.Join(got, "|") != want {
		t.Errorf("records %q, want %q", strings.Join(got, "|"), want)
	}

	l, _ = openContainerLog(path)
	s := l.stream("stdout")
	line := strings.Repeat("x", 1000) + "\n"
	for written := 0; written < maxLogSize+maxLogSize/2; written += len(line) {
		s.Write([]byte(line))
	}
	l.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Size() > maxLogSize {
		t.Errorf("log not bounded: %v %v", fi.Size(), err)
	}
	if fi, err := os.Stat(path + ".1"); err != nil || fi.Size() > maxLogSize || fi.Size() < maxLogSize/2 {
		t.Errorf("rotated log: %v", err)
	}

	// A log of before the records is read as stdout.
	old := filepath.Join(t.TempDir(), "old.log")
	os.WriteFile(old, []byte("plain text\n"), 0o600)
	if recs := readAllLog(t, old); len(recs) != 1 || recs[0].Stream != "stdout" || recs[0].Log != "plain text\n" {
		t.Errorf("old log: %+v", recs)
	}
}
