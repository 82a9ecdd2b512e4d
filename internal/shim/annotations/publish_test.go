package annotations

import (
	"strings"
	"testing"
)

// The publish annotation is passed on raw (pkg/vc parses it) once allowed;
// it needs the allowlist and refuses control characters.
func TestPublishAnnotation(t *testing.T) {
	ann := map[string]string{AnnotationPublish: "8080:80,127.0.0.1:5353:53/udp"}
	if _, err := ParseSandboxAnnotations(ann, nil); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("without the allowlist: %v", err)
	}
	o, err := ParseSandboxAnnotations(ann, []string{"publish"})
	if err != nil || o.Publish == nil || *o.Publish != ann[AnnotationPublish] {
		t.Fatalf("allowed: %+v, %v", o, err)
	}
	if _, err := ParseSandboxAnnotations(map[string]string{AnnotationPublish: "80:80\n81:81"}, []string{"publish"}); err == nil || !strings.Contains(err.Error(), "control characters") {
		t.Errorf("newline: %v", err)
	}
}
