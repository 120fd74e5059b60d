package fetcher

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ulikunitz/xz"

	"github.com/mesolite/mesolite/errdefs"
)

// maxXZDictCap is the largest LZMA2 dictionary an .xz archive may ask the
// fetch child to allocate. xz's presets go up to 64 MiB (-9, -9e); 256 MiB
// leaves room for archives made with a larger custom dictionary.
const maxXZDictCap = 256 << 20

// newXZReader is xz.NewReader behind an xzGuard. ulikunitz/xz allocates
// whatever dictionary a block header asks for, up to 4 GiB, and takes
// ReaderConfig.DictCap as a floor rather than a cap; the guard refuses
// such a block before the decoder reads its header.
func newXZReader(r io.Reader) (io.Reader, error) {
	return xz.NewReader(newXZGuard(r, maxXZDictCap))
}

// xzGuard passes an xz file through unchanged and fails, before any byte
// of it reaches the reader, at a block header whose LZMA2 dictionary is
// larger than max. It walks the container as the bytes go by without
// decompressing anything: headers are parsed, and a block's data is
// skipped chunk by chunk by the sizes LZMA2 chunk headers carry, so the
// index at the end of a stream (which could lie) is never needed to find
// the next block. What it does not check (CRCs, padding bytes, the index)
// the decoder does.
type xzGuard struct {
	r   *bufio.Reader
	max int64
	// pass is what is left of the unit being passed through; next parses
	// the unit after it and sets pass.
	pass int64
	next func() error
	err  error

	off       int64 // bytes passed so far
	unitStart int64 // where the current block or index began
	checkSize int64 // the stream's check field, after each block
	records   uint64
}

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

func newXZGuard(r io.Reader, max int64) *xzGuard {
	g := &xzGuard{r: bufio.NewReaderSize(r, 64<<10), max: max}
	g.next = g.streamHeader
	return g
}

func (g *xzGuard) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && g.err == nil {
		if g.pass == 0 {
			g.err = g.next()
			continue
		}
		m, err := g.r.Read(p[n:min(int64(len(p)), int64(n)+g.pass)])
		n += m
		g.pass -= int64(m)
		g.off += int64(m)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		g.err = err
	}
	if n > 0 {
		return n, nil
	}
	return 0, g.err
}

func xzCorrupt(format string, args ...any) error {
	return fmt.Errorf("xz: "+format+": %w", append(args, errdefs.ErrInvalid)...)
}

// peek returns the next n bytes, or fails when the file ends first.
func (g *xzGuard) peek(n int) ([]byte, error) {
	b, err := g.r.Peek(n)
	if len(b) < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// peekUpTo returns up to n next bytes, fewer where the file ends.
func (g *xzGuard) peekUpTo(n int) ([]byte, error) {
	b, err := g.r.Peek(n)
	if err == io.EOF || err == nil {
		return b, nil
	}
	return nil, err
}

func (g *xzGuard) streamHeader() error {
	b, err := g.peek(12)
	if err != nil {
		return err
	}
	if !bytes.Equal(b[:6], xzMagic) || b[6] != 0 || b[7]&0xf0 != 0 {
		return xzCorrupt("bad stream header")
	}
	// Check sizes by check ID: 0, then 4, 8, 16, 32, 64 bytes for each
	// group of three IDs.
	if id := b[7] & 0x0f; id == 0 {
		g.checkSize = 0
	} else {
		g.checkSize = 4 << ((id - 1) / 3)
	}
	g.pass, g.next = 12, g.blockOrIndex
	return nil
}

func (g *xzGuard) blockOrIndex() error {
	b, err := g.peek(1)
	if err != nil {
		return err
	}
	g.unitStart = g.off
	if b[0] == 0 {
		return g.indexHeader()
	}
	size := (int(b[0]) + 1) * 4
	h, err := g.peek(size)
	if err != nil {
		return err
	}
	if err := g.checkBlockHeader(h[:size-4]); err != nil {
		return err
	}
	g.pass, g.next = int64(size), g.chunk
	return nil
}

// checkBlockHeader reads a block header without its CRC32 and refuses an
// LZMA2 filter with a dictionary over max.
func (g *xzGuard) checkBlockHeader(h []byte) error {
	flags := h[1]
	if flags&0x3c != 0 {
		return xzCorrupt("bad block flags")
	}
	r := bytes.NewReader(h[2:])
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} {
		if present {
			if _, err := binary.ReadUvarint(r); err != nil {
				return xzCorrupt("bad block header")
			}
		}
	}
	for range int(flags&3) + 1 {
		id, err1 := binary.ReadUvarint(r)
		n, err2 := binary.ReadUvarint(r)
		if err1 != nil || err2 != nil || n > uint64(r.Len()) {
			return xzCorrupt("bad filter flags")
		}
		props := make([]byte, n)
		_, _ = io.ReadFull(r, props)
		if id != 0x21 {
			continue
		}
		if n != 1 || props[0] > 40 {
			return xzCorrupt("bad LZMA2 properties")
		}
		if dict := xzDictCap(props[0]); dict > g.max {
			return fmt.Errorf("xz block asks for a %d MiB dictionary, over the fetcher's limit of %d MiB: %w: %w",
				dict>>20, g.max>>20, errLimit, errdefs.ErrInvalid)
		}
	}
	return nil
}

// xzDictCap decodes an LZMA2 dictionary size property (0..40).
func xzDictCap(c byte) int64 {
	if c == 40 {
		return 1<<32 - 1
	}
	return int64(2|c&1) << (c/2 + 11)
}

// chunk skips one LZMA2 chunk by the sizes in its header.
func (g *xzGuard) chunk() error {
	b, err := g.peek(1)
	if err != nil {
		return err
	}
	switch c := b[0]; {
	case c == 0:
		g.pass, g.next = 1, g.blockEnd
	case c == 1 || c == 2:
		h, err := g.peek(3)
		if err != nil {
			return err
		}
		g.pass = 3 + int64(binary.BigEndian.Uint16(h[1:3])) + 1
	case c >= 0x80:
		n := 5
		if c >= 0xc0 {
			n = 6 // a properties byte follows
		}
		h, err := g.peek(n)
		if err != nil {
			return err
		}
		g.pass = int64(n) + int64(binary.BigEndian.Uint16(h[3:5])) + 1
	default:
		return xzCorrupt("bad LZMA2 chunk")
	}
	return nil
}

// blockEnd passes the block padding (to a multiple of four bytes from the
// block header's start) and the check.
func (g *xzGuard) blockEnd() error {
	g.pass = (4-(g.off-g.unitStart)%4)%4 + g.checkSize
	g.next = g.blockOrIndex
	return nil
}

func (g *xzGuard) indexHeader() error {
	b, err := g.peekUpTo(1 + binary.MaxVarintLen64)
	if err != nil {
		return err
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 {
		return xzCorrupt("bad index")
	}
	g.records = n
	g.pass, g.next = int64(1+k), g.indexRecord
	return nil
}

// indexRecord passes one record (two numbers) at a time: a record is at
// least two bytes, so a count that lies runs into the end of the file.
func (g *xzGuard) indexRecord() error {
	if g.records == 0 {
		g.pass = (4-(g.off-g.unitStart)%4)%4 + 4
		g.next = g.footer
		return nil
	}
	b, err := g.peekUpTo(2 * binary.MaxVarintLen64)
	if err != nil {
		return err
	}
	_, k1 := binary.Uvarint(b)
	if k1 <= 0 {
		return xzCorrupt("bad index record")
	}
	_, k2 := binary.Uvarint(b[k1:])
	if k2 <= 0 {
		return xzCorrupt("bad index record")
	}
	g.records--
	g.pass = int64(k1 + k2)
	return nil
}

func (g *xzGuard) footer() error {
	b, err := g.peek(12)
	if err != nil {
		return err
	}
	if b[10] != 'Y' || b[11] != 'Z' {
		return xzCorrupt("bad stream footer")
	}
	g.pass, g.next = 12, g.streamPadding
	return nil
}

// streamPadding passes the zeros between streams and starts the next one.
func (g *xzGuard) streamPadding() error {
	b, err := g.peekUpTo(len(xzMagic))
	switch {
	case err != nil:
		return err
	case len(b) == 0:
		return io.EOF
	case bytes.HasPrefix(b, []byte{0, 0, 0, 0}):
		g.pass = 4
		return nil
	case bytes.Equal(b, xzMagic):
		return g.streamHeader()
	}
	return xzCorrupt("data after the last stream")
}
