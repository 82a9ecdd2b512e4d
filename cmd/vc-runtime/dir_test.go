package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestContainerDir: a container's directory is <root>/<id> while the
// VM's sockets below it fit in sun_path, as with podman's root and ids;
// under docker's root with its 64-character ids it is shortened, one per
// id, and state, list and a lookup by the shortened name work.
func TestContainerDir(t *testing.T) {
	podmanID := strings.Repeat("a", 64)
	if got := containerDir(DefaultRoot, podmanID); got != DefaultRoot+"/"+podmanID {
		t.Errorf("podman's: %s", got)
	}
	const dockerRoot = "/var/run/docker/runtime-runc/moby"
	id1 := "4d8b38692863e40621e437cbb77e7fd7646c252f19c88e940653aed627b17962"
	id2 := id1[:63] + "3"
	d1, d2 := containerDir(dockerRoot, id1), containerDir(dockerRoot, id2)
	for _, d := range []string{d1, d2} {
		if filepath.Dir(d) != dockerRoot || len(d)+len("/vm/vm") > vmStateDirMax || !strings.HasPrefix(filepath.Base(d), id1[:8]) {
			t.Errorf("docker's: %s (%d bytes)", d, len(d))
		}
	}
	if d1 == d2 {
		t.Errorf("two ids, one directory %s", d1)
	}
	if long := strings.Repeat("r", 120); !strings.HasPrefix(containerDir(long, id1), long+"/.") {
		t.Errorf("a root too long for any id: %s", containerDir(long, id1))
	}

	root := t.TempDir()
	if b := filepath.Base(containerDir(root, id1)); !strings.HasPrefix(b, id1[:1]) {
		t.Fatalf("root %s: %s, want a shortened id", root, b)
	}
	writeState(t, root, &containerState{ID: id1, Status: statusStopped})
	if st, err := loadState(root, id1); err != nil || st.ID != id1 {
		t.Fatalf("loadState: %+v, %v", st, err)
	}
	states, err := listStates(root)
	if err != nil || len(states) != 1 || states[0].ID != id1 {
		t.Errorf("listStates: %+v, %v", states, err)
	}
	// The shortened name is no id of its own.
	if _, err := loadState(root, filepath.Base(containerDir(root, id1))); !errors.Is(err, errNotExist) {
		t.Errorf("loadState by the shortened name: %v, want %v", err, errNotExist)
	}
}
