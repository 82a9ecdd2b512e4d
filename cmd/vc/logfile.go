package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"sync"
	"time"
)

// A container's log is JSON lines, one record per line of output (as
// docker's json-file driver keeps them), so that stdout and stderr stay
// apart and each line has its time. It is bounded: past maxLogSize the
// file becomes <path>.1 (replacing the previous one) and a new one starts.
const (
	maxLogSize = 8 << 20
	// maxLogLine cuts a line without a newline into records.
	maxLogLine = 16 << 10
)

// logRecord is one line of output.
type logRecord struct {
	Time   time.Time `json:"time"`
	Stream string    `json:"stream"`
	Log    string    `json:"log"`
}

// containerLog writes a container's log file.
type containerLog struct {
	mu   sync.Mutex
	path string
	f    *os.File
	size int64
}

func openContainerLog(path string) (*containerLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &containerLog{path: path, f: f, size: fi.Size()}, nil
}

func (l *containerLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

func (l *containerLog) write(stream string, line []byte) {
	b, _ := json.Marshal(logRecord{Time: time.Now().UTC(), Stream: stream, Log: string(line)})
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.size+int64(len(b)) > maxLogSize && l.size > 0 {
		l.f.Close()
		os.Rename(l.path, l.path+".1")
		f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return // the log is lost, the container goes on
		}
		l.f, l.size = f, 0
	}
	n, _ := l.f.Write(b)
	l.size += int64(n)
}

// stream is a writer of one of the container's streams into the log,
// which keeps a partial line until its newline (or maxLogLine).
func (l *containerLog) stream(name string) *logStream { return &logStream{l: l, name: name} }

type logStream struct {
	l    *containerLog
	name string
	buf  []byte
}

func (s *logStream) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			if len(s.buf) >= maxLogLine {
				s.l.write(s.name, s.buf)
				s.buf = s.buf[:0]
			}
			return len(p), nil
		}
		s.l.write(s.name, s.buf[:i+1])
		s.buf = s.buf[i+1:]
	}
}

// Flush writes a last line without its newline.
func (s *logStream) Flush() {
	if len(s.buf) > 0 {
		s.l.write(s.name, s.buf)
		s.buf = nil
	}
}

// readLog calls fn for each record of r; a line that is not a record (a
// log written before logs were JSON) is stdout.
func readLog(r io.Reader, fn func(logRecord)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4*maxLogLine+1024)
	for sc.Scan() {
		var rec logRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.Stream == "" {
			rec = logRecord{Stream: "stdout", Log: sc.Text() + "\n"}
		}
		fn(rec)
	}
	return sc.Err()
}
