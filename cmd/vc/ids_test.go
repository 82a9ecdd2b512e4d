package main

import (
	"context"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/persist"
	"github.com/virtcontainers/vc/pkg/vc"
)

// fakeContainer records a stopped sandbox name with id cid, as vc run
// leaves one (its state and its run options).
func fakeContainer(t *testing.T, g *globals, name, cid string) {
	t.Helper()
	store, err := persist.New(g.stateRoot)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Create(name); err != nil {
		t.Fatal(err)
	}
	if err := store.Save(name, "sandbox", vc.SandboxStatus{ID: name, State: vc.StateStopped}); err != nil {
		t.Fatal(err)
	}
	if err := saveOptions(store.Dir(name), runOptions{ID: name, CID: cid}); err != nil {
		t.Fatal(err)
	}
}

func TestResolveContainer(t *testing.T) {
	ctx := context.Background()
	g := &globals{stateRoot: t.TempDir()}
	web := "a6cf" + strings.Repeat("1", 60)
	db := "a6d0" + strings.Repeat("2", 60)
	fakeContainer(t, g, "web", web)
	fakeContainer(t, g, "db", db)
	// A container named like a prefix of another's id.
	fakeContainer(t, g, "a6d0", "ffff"+strings.Repeat("3", 60))
	for ref, want := range map[string]string{
		"web":   "web",  // its name
		"a6cf":  "web",  // a unique prefix of its id
		web:     "web",  // its whole id
		"a6d0":  "a6d0", // the name wins over db's id prefix
		"a6d02": "db",
		"ffff":  "a6d0",
		"nope":  "nope", // nothing: the command reports it missing
		"beef":  "beef",
	} {
		got, err := resolveContainer(ctx, g, ref)
		if err != nil || got != want {
			t.Errorf("resolveContainer(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
	// An ambiguous prefix is an error naming the candidates.
	_, err := resolveContainer(ctx, g, "a6")
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "db, web") || !strings.Contains(err.Error(), `"a6"`) {
		t.Errorf("ambiguous prefix: %v, want an invalid-argument error naming db and web", err)
	}
	if _, err := resolveContainers(ctx, g, []string{"web", "a6"}); err == nil {
		t.Error("resolveContainers accepted an ambiguous prefix")
	}
}

// A container without a recorded id (run before ids were) gets one of 64
// hex digits derived from its name: the same on every call.
func TestContainerIDWithoutRecord(t *testing.T) {
	g := &globals{stateRoot: t.TempDir()}
	fakeContainer(t, g, "old", "")
	id := containerID(g, "old")
	if len(id) != 64 || !hexID.MatchString(id) || containerID(g, "old") != id || containerID(g, "other") == id {
		t.Errorf("containerID of an old container: %q", id)
	}
	if got, err := resolveContainer(context.Background(), g, id[:8]); err != nil || got != "old" {
		t.Errorf("resolve its prefix: %q, %v", got, err)
	}
	if n := newContainerID(); len(n) != 64 || !hexID.MatchString(n) || n == newContainerID() {
		t.Errorf("newContainerID: %q", n)
	}
}
