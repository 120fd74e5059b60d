package sandbox

import (
	"os"
	"sync"
)

// rootCache keeps recently used directories open as os.Roots, so a request
// for a sandbox file costs one openat instead of a walk through the seven
// directories above it (the walk is most of the cost of /files/read).
//
// A cached root is checked on every use: a directory that was removed (the
// GC collected it, or it was replaced) has no links left, and is dropped and
// resolved again from the top with all the checks. Entries are reference
// counted, so an evicted root stays open until its last Target is closed.
type rootCache struct {
	mu      sync.Mutex
	entries map[string]*rootEntry
	max     int
	clock   uint64
}

type rootEntry struct {
	key     string
	root    *os.Root
	refs    int
	used    uint64
	evicted bool
}

func newRootCache(max int) *rootCache {
	return &rootCache{entries: make(map[string]*rootEntry), max: max}
}

// get returns the root cached under key, or opens it with open and caches
// it. The caller must release the entry.
func (c *rootCache) get(key string, open func() (*os.Root, error)) (*rootEntry, error) {
	c.mu.Lock()
	e := c.entries[key]
	if e != nil {
		e.refs++
		c.clock++
		e.used = c.clock
	}
	c.mu.Unlock()
	if e != nil {
		if alive(e.root) {
			return e, nil
		}
		c.mu.Lock()
		c.evictLocked(e)
		c.mu.Unlock()
		c.release(e)
	}

	root, err := open()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.entries[key]; old != nil {
		// Someone opened it meanwhile; keep theirs.
		root.Close()
		old.refs++
		return old, nil
	}
	c.clock++
	e = &rootEntry{key: key, root: root, refs: 1, used: c.clock}
	c.entries[key] = e
	if len(c.entries) > c.max {
		c.evictOldestLocked()
	}
	return e, nil
}

func (c *rootCache) release(e *rootEntry) {
	if e == nil {
		return
	}
	c.mu.Lock()
	e.refs--
	closeNow := e.refs == 0 && e.evicted
	c.mu.Unlock()
	if closeNow {
		e.root.Close()
	}
}

func (c *rootCache) evictLocked(e *rootEntry) {
	if c.entries[e.key] == e {
		delete(c.entries, e.key)
	}
	if !e.evicted {
		e.evicted = true
		if e.refs == 0 {
			e.root.Close()
		}
	}
}

// evictOldestLocked drops the least recently used entry nobody holds; when
// all are held the cache runs over its size for a while.
func (c *rootCache) evictOldestLocked() {
	var oldest *rootEntry
	for _, e := range c.entries {
		if e.refs == 0 && (oldest == nil || e.used < oldest.used) {
			oldest = e
		}
	}
	if oldest != nil {
		c.evictLocked(oldest)
	}
}

// close drops every entry (held ones close on release).
func (c *rootCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		c.evictLocked(e)
	}
}

// alive reports whether the directory behind root still exists: a removed
// directory keeps working as a descriptor but has no links.
func alive(root *os.Root) bool {
	fi, err := root.Stat(".")
	return err == nil && nlink(fi) > 0
}
