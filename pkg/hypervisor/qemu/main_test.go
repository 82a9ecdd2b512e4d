package qemu

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if initrdDir != "" {
		os.RemoveAll(initrdDir)
	}
	os.Exit(code)
}
