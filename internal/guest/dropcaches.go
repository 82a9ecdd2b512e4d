package guest

import (
	"os"
	"sync"
	"time"
)

// After a container is removed, the agent drops the guest's clean page
// cache (/proc/sys/vm/drop_caches = 1): the pages of files no process maps
// any more, which the removed container read (through 9p, mapped: its
// binaries and libraries; or from a block device) and nobody else needs.
// Freed, they go back to the host by the balloon's free page reporting;
// cached, the guest would keep them, and the host would keep paying for
// them, until memory pressure in the guest. What the next container maps
// again is read again from the host, whose own page cache has it.
// Mapped pages and dirty ones stay. Only when the agent is the guest's
// init: anywhere else the cache is not its own.

// dropCachesPath is the file written; tests point it elsewhere.
var dropCachesPath = "/proc/sys/vm/drop_caches"

// cacheDropper runs one drop at a time in the background; removals during
// a drop ask for one more after it.
type cacheDropper struct {
	mu      sync.Mutex
	running bool
	again   bool
}

var cacheDrops cacheDropper

// dropCachesSoon drops the clean page cache in the background.
func (a *Agent) dropCachesSoon() {
	if !a.cfg.InitDaemon {
		return
	}
	cacheDrops.request(func() {
		t := time.Now()
		if err := os.WriteFile(dropCachesPath, []byte("1"), 0o644); err != nil {
			a.log.Warn("drop the page cache after a container's removal", "err", err)
			return
		}
		a.log.Debug("page cache dropped after a container's removal", "took", time.Since(t).Round(time.Millisecond))
	})
}

func (d *cacheDropper) request(drop func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running {
		d.again = true
		return
	}
	d.running = true
	go func() {
		for {
			drop()
			d.mu.Lock()
			if !d.again {
				d.running = false
				d.mu.Unlock()
				return
			}
			d.again = false
			d.mu.Unlock()
		}
	}()
}
