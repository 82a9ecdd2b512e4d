package qemu

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if initrdPath != "" {
		os.RemoveAll(filepath.Dir(initrdPath))
	}
	os.Exit(code)
}
