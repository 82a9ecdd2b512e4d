package shim

import "testing"

// TestParseConfigTracing: the [tracing] section reaches tracing.Config;
// an unknown key in it is refused like any other.
func TestParseConfigTracing(t *testing.T) {
	cfg, err := ParseConfig([]byte("[tracing]\nenabled = true\nendpoint = \"http://collector:4317\"\nservice_name = \"shim\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if tc := cfg.Tracing; !tc.Enabled || tc.Endpoint != "http://collector:4317" || tc.ServiceName != "shim" {
		t.Fatalf("tracing config %+v", tc)
	}
	if DefaultConfig().Tracing.Enabled {
		t.Fatal("tracing on by default")
	}
	if _, err := ParseConfig([]byte("[tracing]\nexporter = \"zipkin\"\n")); err == nil {
		t.Fatal("an unknown [tracing] key was accepted")
	}
}
