package artifactsrv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"
)

// digestKey identifies one version of a file: a change of content shows in
// its size or mtime, a replacement (rename over it) in its inode.
type digestKey struct {
	path  string
	size  int64
	mtime int64
	ino   uint64
}

func keyOf(rel string, fi fs.FileInfo) digestKey {
	k := digestKey{path: rel, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		k.ino = st.Ino
	}
	return k
}

// digestCache remembers sha256 digests and makes concurrent requests for
// the same version wait for one computation.
type digestCache struct {
	mu      sync.Mutex
	max     int
	sums    map[digestKey]string
	current map[string]digestKey
	running map[digestKey]*digestCall
}

type digestCall struct {
	done chan struct{}
	sum  string
	err  error
}

func newDigestCache(max int) *digestCache {
	return &digestCache{
		max:     max,
		sums:    map[digestKey]string{},
		current: map[string]digestKey{},
		running: map[digestKey]*digestCall{},
	}
}

// get returns the digest of f (opened as rel, described by fi), computing
// it at most once per version. It reads with ReadAt, leaving f's offset at
// 0 for http.ServeContent.
func (c *digestCache) get(rel string, f *os.File, fi fs.FileInfo) (string, error) {
	k := keyOf(rel, fi)
	c.mu.Lock()
	if sum, ok := c.sums[k]; ok {
		c.mu.Unlock()
		return sum, nil
	}
	if call, ok := c.running[k]; ok {
		c.mu.Unlock()
		<-call.done
		return call.sum, call.err
	}
	call := &digestCall{done: make(chan struct{})}
	c.running[k] = call
	c.mu.Unlock()

	h := sha256.New()
	_, err := io.Copy(h, io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		call.err = fmt.Errorf("read %s: %w", rel, err)
	} else {
		call.sum = hex.EncodeToString(h.Sum(nil))
	}
	// A file written while we read it gets a new key; do not remember a
	// digest of bytes that were in flux.
	stable := false
	if after, err := f.Stat(); err == nil {
		stable = keyOf(rel, after) == k
	}
	c.mu.Lock()
	delete(c.running, k)
	if call.err == nil && stable {
		c.storeLocked(k, call.sum)
	}
	c.mu.Unlock()
	close(call.done)
	return call.sum, call.err
}

// put records a digest already known (an upload hashed on the way in).
func (c *digestCache) put(rel string, fi fs.FileInfo, sum string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.storeLocked(keyOf(rel, fi), sum)
}

// forget drops the digest of rel (deleted or replaced).
func (c *digestCache) forget(rel string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.current[rel]; ok {
		delete(c.sums, k)
		delete(c.current, rel)
	}
}

func (c *digestCache) storeLocked(k digestKey, sum string) {
	if old, ok := c.current[k.path]; ok {
		delete(c.sums, old)
	}
	if len(c.sums) >= c.max {
		// Rarely reached; dropping an arbitrary half costs a re-hash later.
		n := 0
		for old := range c.sums {
			delete(c.sums, old)
			delete(c.current, old.path)
			if n++; n >= c.max/2 {
				break
			}
		}
	}
	c.sums[k] = sum
	c.current[k.path] = k
}
