package metrics

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	var b bytes.Buffer
	err := Write(&b, []Family{
		One("vc_up", "Is it up.", Gauge, 1),
		{Name: "vc_load", Help: "Back\\slash and\nnewline.", Type: Gauge, Samples: []Sample{
			{Labels: []Label{{"period", "1m"}}, Value: 0.5},
			{Labels: []Label{{"period", `q"u\o` + "\n"}, {"x", ""}}, Value: 1e21},
		}},
		{Name: "vc_odd", Type: Untyped, Samples: []Sample{{Value: math.NaN()}, {Value: math.Inf(1)}, {Value: math.Inf(-1)}, {Value: -0.25}}},
		{Name: "vc_total", Type: Counter, Samples: []Sample{{Value: 12345678}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `# HELP vc_up Is it up.
# TYPE vc_up gauge
vc_up 1
# HELP vc_load Back\\slash and\nnewline.
# TYPE vc_load gauge
vc_load{period="1m"} 0.5
vc_load{period="q\"u\\o\n",x=""} 1e+21
# TYPE vc_odd untyped
vc_odd NaN
vc_odd +Inf
vc_odd -Inf
vc_odd -0.25
# TYPE vc_total counter
vc_total 1.2345678e+07
`
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWriteErrors(t *testing.T) {
	for name, fams := range map[string][]Family{
		"bad name":       {One("1bad", "", Gauge, 1)},
		"dash":           {One("vc-bad", "", Gauge, 1)},
		"empty name":     {One("", "", Gauge, 1)},
		"twice":          {One("a", "", Gauge, 1), One("a", "", Gauge, 2)},
		"bad type":       {One("a", "", "histogram", 1)},
		"bad label":      {{Name: "a", Type: Gauge, Samples: []Sample{{Labels: []Label{{"a-b", "v"}}}}}},
		"reserved label": {{Name: "a", Type: Gauge, Samples: []Sample{{Labels: []Label{{"__x", "v"}}}}}},
	} {
		var b bytes.Buffer
		if err := Write(&b, fams); err == nil {
			t.Errorf("%s: Write accepted %+v", name, fams)
		} else if b.Len() != 0 {
			t.Errorf("%s: Write wrote %q before failing", name, b.String())
		}
	}
}

// sampleLine is what a sample line of the text format looks like.
var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? (\S+)$`)

// parse checks text-format output line by line and returns each family's
// first value.
func parse(t *testing.T, text string) map[string]float64 {
	t.Helper()
	vals := map[string]float64{}
	typed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			typed[strings.Fields(rest)[0]] = true
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("bad line %q", line)
		}
		if !typed[m[1]] {
			t.Fatalf("sample %q before its TYPE", line)
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("bad value in %q", line)
		}
		if _, ok := vals[m[1]]; !ok {
			vals[m[1]] = v
		}
	}
	return vals
}

func TestParseStat(t *testing.T) {
	line := "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 7 0 100 8388608 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0"
	f, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if f.cpu != 4 || f.threads != 7 || f.vsize != 8388608 || f.rss != 300*float64(os.Getpagesize()) {
		t.Fatalf("parseStat = %+v", f)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 x 12 13 14 15 16 17 18 19 20 21 22"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}

func TestProcessSelf(t *testing.T) {
	fams, err := Process("/proc/self")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Write(&b, fams); err != nil {
		t.Fatal(err)
	}
	vals := parse(t, b.String())
	for _, name := range []string{"process_resident_memory_bytes", "process_open_fds", "go_goroutines", "process_threads", "go_heap_alloc_bytes"} {
		if vals[AgentPrefix+name] <= 0 {
			t.Errorf("%s = %v, want > 0", name, vals[AgentPrefix+name])
		}
	}
	if _, ok := vals[AgentPrefix+"process_cpu_seconds_total"]; !ok {
		t.Error("no cpu seconds")
	}
}

func TestGuest(t *testing.T) {
	proc := t.TempDir()
	os.WriteFile(filepath.Join(proc, "meminfo"), []byte("MemTotal:        2048 kB\nMemFree:  1024 kB\nMemAvailable:    1536 kB\nHugePages_Total:       0\n"), 0o644)
	os.WriteFile(filepath.Join(proc, "loadavg"), []byte("0.50 0.25 1.00 1/100 4242\n"), 0o644)
	os.WriteFile(filepath.Join(proc, "uptime"), []byte("12.5 20.0\n"), 0o644)
	fams, err := Guest(proc)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Write(&b, fams); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	vals := parse(t, text)
	if vals[GuestPrefix+"memory_total_bytes"] != 2048*1024 || vals[GuestPrefix+"memory_available_bytes"] != 1536*1024 ||
		vals[GuestPrefix+"uptime_seconds"] != 12.5 {
		t.Fatalf("values %v", vals)
	}
	if !strings.Contains(text, `vc_guest_load_average{period="15m"} 1`+"\n") {
		t.Fatalf("no 15m load in\n%s", text)
	}
	if _, ok := vals[GuestPrefix+"swap_total_bytes"]; ok {
		t.Fatal("a figure absent from meminfo was reported")
	}
	// Missing files are reported, what could be read is kept.
	os.Remove(filepath.Join(proc, "loadavg"))
	fams, err = Guest(proc)
	if err == nil || !strings.Contains(err.Error(), "loadavg") || len(fams) == 0 {
		t.Fatalf("Guest without loadavg = %d families, %v", len(fams), err)
	}
}

func TestGuestReal(t *testing.T) {
	fams, err := Guest("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	Write(&b, fams)
	if vals := parse(t, b.String()); vals[GuestPrefix+"memory_total_bytes"] <= 0 {
		t.Fatalf("no memory total in\n%s", b.String())
	}
}
