package fetcher

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"sync/atomic"

	"github.com/mesolite/mesolite/errdefs"
)

// checksum is the `checksum=` query parameter in the form go-getter defined:
// `<type>:<hex>` with type md5, sha1, sha256 or sha512, or a bare hex value
// whose length names the type. go-getter's `file:<url>` form (fetch a
// checksum file) is refused: it would be a second, unchecked download.
type checksum struct {
	typ  string
	want []byte
	new  func() hash.Hash
}

var checksumTypes = map[string]func() hash.Hash{
	"md5":    md5.New,
	"sha1":   sha1.New,
	"sha256": sha256.New,
	"sha512": sha512.New,
}

func parseChecksum(v string) (*checksum, error) {
	typ, val, ok := strings.Cut(v, ":")
	if !ok {
		val = v
		switch len(v) {
		case 32:
			typ = "md5"
		case 40:
			typ = "sha1"
		case 64:
			typ = "sha256"
		case 128:
			typ = "sha512"
		default:
			return nil, fmt.Errorf("checksum %q: cannot tell the hash type from its length; write <type>:<hex>: %w", v, errdefs.ErrInvalid)
		}
	}
	typ = strings.ToLower(typ)
	if typ == "file" {
		return nil, fmt.Errorf("checksum=file:... is not supported; give the digest as <type>:<hex>: %w", errdefs.ErrInvalid)
	}
	newHash, ok := checksumTypes[typ]
	if !ok {
		return nil, fmt.Errorf("checksum type %q is not supported (md5, sha1, sha256, sha512): %w", typ, errdefs.ErrInvalid)
	}
	want, err := hex.DecodeString(val)
	if err != nil || len(want) != newHash().Size() {
		return nil, fmt.Errorf("checksum %q is not a %s digest in hex: %w", v, typ, errdefs.ErrInvalid)
	}
	return &checksum{typ: typ, want: want, new: newHash}, nil
}

func (c *checksum) String() string { return c.typ + ":" + hex.EncodeToString(c.want) }

// matchesSHA256 reports whether a recorded sha256 settles this checksum
// without reading the file again.
func (c *checksum) matchesSHA256(sumHex string) (match, decided bool) {
	if c.typ != "sha256" {
		return false, false
	}
	return sumHex == hex.EncodeToString(c.want), true
}

// digestFile reads path once and returns its sha256 in hex; when c is not
// nil it also verifies c against the same bytes.
func digestFile(path string, c *checksum) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := sha256.New()
	var w io.Writer = s
	var other hash.Hash
	if c != nil && c.typ != "sha256" {
		other = c.new()
		w = io.MultiWriter(s, other)
	}
	if _, err := io.Copy(w, f); err != nil {
		// Not the path: it is the agent's, and this reaches the task.
		return "", fmt.Errorf("read the download for its checksum: %v: %w", errors.Unwrap(err), errdefs.ErrUnavailable)
	}
	sum := s.Sum(nil)
	if c != nil {
		got := sum
		if other != nil {
			got = other.Sum(nil)
		}
		if !bytes.Equal(got, c.want) {
			return "", fmt.Errorf("checksum mismatch: want %s, got %s:%s: %w", c, c.typ, hex.EncodeToString(got), errdefs.ErrInvalid)
		}
	}
	return hex.EncodeToString(sum), nil
}

// entryReads counts the whole reads of cache entries this process made
// (hashFile, verifyEntry): tests use it to show that a hit on a settled,
// unchanged entry reads none.
var entryReads atomic.Int64

// verifyEntry checks a cache entry's bytes, reading them once: against the
// sha256 recorded for them when full is true (the entry's stamp is not
// trusted), and against the URI's checksum= c when there is one. Without
// full, a sha256 checksum is compared with the recorded sum and only
// another type needs the read. It reads with pread, so it can run while
// the same file is copied.
func verifyEntry(f *os.File, e *cacheEntry, c *checksum, full bool) error {
	if !full {
		if c == nil {
			return nil
		}
		if match, decided := c.matchesSHA256(e.SHA256); decided {
			if !match {
				return fmt.Errorf("%w: it does not match checksum %s", errEntryCorrupt, c)
			}
			return nil
		}
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != e.Size {
		return fmt.Errorf("%w: %d bytes on disk, %d recorded", errEntryCorrupt, fi.Size(), e.Size)
	}
	entryReads.Add(1)
	var s, other hash.Hash
	var ws []io.Writer
	if full {
		s = sha256.New()
		ws = append(ws, s)
	}
	if c != nil && c.typ != "sha256" {
		other = c.new()
		ws = append(ws, other)
	}
	if _, err := io.CopyBuffer(io.MultiWriter(ws...), io.NewSectionReader(f, 0, e.Size), make([]byte, 1<<20)); err != nil {
		return fmt.Errorf("read the cache entry: %w", err)
	}
	var got []byte
	if full {
		got = s.Sum(nil)
		if hex.EncodeToString(got) != e.SHA256 {
			return fmt.Errorf("%w: recorded %s, read %s", errEntryCorrupt, e.SHA256, hex.EncodeToString(got))
		}
	}
	if c != nil {
		if other != nil {
			got = other.Sum(nil)
		}
		if !bytes.Equal(got, c.want) {
			return fmt.Errorf("%w: it does not match checksum %s", errEntryCorrupt, c)
		}
	}
	return nil
}
