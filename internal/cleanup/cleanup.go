// Package cleanup undoes the steps of an operation that failed halfway.
//
//	cu := cleanup.Make(func() { removeDir() })
//	defer cu.Clean()
//	...
//	cu.Add(func() { stopVM() })
//	...
//	cu.Release() // success: keep everything
//
// Clean runs the added functions in reverse order.
package cleanup

// Cleanup is a stack of undo functions.
type Cleanup struct {
	fns []func()
}

// Make returns a Cleanup holding fn.
func Make(fn func()) Cleanup {
	return Cleanup{fns: []func(){fn}}
}

// Add pushes fn.
func (c *Cleanup) Add(fn func()) {
	c.fns = append(c.fns, fn)
}

// Clean runs every function, last added first, and forgets them.
func (c *Cleanup) Clean() {
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i]()
	}
	c.fns = nil
}

// Release forgets the functions without running them.
func (c *Cleanup) Release() {
	c.fns = nil
}
