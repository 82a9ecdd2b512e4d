package guestimage

import (
	"context"
	"errors"
	"log/slog"
	"testing"
)

// Only a failed download with the default package is worth refreshing
// apt's lists for; every other failure comes back as it is, after one try.
func TestWithFreshListsRetriesOnlyDownloads(t *testing.T) {
	other := errors.New("something else")
	for name, c := range map[string]struct {
		opts Options
		err  error
	}{
		"other error":     {Options{Logger: slog.Default()}, other},
		"pinned package":  {Options{Logger: slog.Default(), KernelPackage: "linux-image-x"}, errDownload},
		"no error at all": {Options{Logger: slog.Default()}, nil},
	} {
		calls := 0
		_, err := withFreshLists(context.Background(), c.opts, func() (*Image, error) {
			calls++
			return nil, c.err
		})
		if calls != 1 || !errors.Is(err, c.err) {
			t.Errorf("%s: %d calls, error %v", name, calls, err)
		}
	}
}
