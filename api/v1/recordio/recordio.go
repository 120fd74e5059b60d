package recordio

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// DefaultMaxRecordSize bounds records when NewReader is given no limit. It is
// generous: an OFFERS event for a large cluster runs to megabytes.
const DefaultMaxRecordSize = 64 << 20

// maxHeaderDigits is enough for any uint64 length; a longer header is
// garbage, not a large record.
const maxHeaderDigits = 20

// Errors a Reader returns, wrapped with the offending detail.
var (
	// ErrInvalidHeader: the length line is not 1 to 20 ASCII digits ending
	// in LF; the stream is not RecordIO, or is out of step.
	ErrInvalidHeader = errors.New("recordio: invalid record header")
	// ErrRecordTooLarge: the length exceeds the reader's limit.
	ErrRecordTooLarge = errors.New("recordio: record too large")
)

// Writer writes records to an underlying writer and flushes after each one,
// so a streaming HTTP response delivers every event as it is written. It is
// not safe for concurrent use.
type Writer struct {
	w   io.Writer
	hdr [maxHeaderDigits + 1]byte
}

// NewWriter returns a Writer on w. If w can flush (http.Flusher, a
// bufio.Writer, or anything with Flush() error or FlushError() error), the
// Writer flushes it after every record.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w}
}

// WriteRecord writes p as one record and flushes.
func (w *Writer) WriteRecord(p []byte) error {
	hdr := strconv.AppendUint(w.hdr[:0], uint64(len(p)), 10)
	hdr = append(hdr, '\n')
	if _, err := w.w.Write(hdr); err != nil {
		return fmt.Errorf("recordio: writing header: %w", err)
	}
	if _, err := w.w.Write(p); err != nil {
		return fmt.Errorf("recordio: writing record: %w", err)
	}
	return w.flush()
}

// WriteRecordParts writes the concatenation of parts as one record and
// flushes, without joining them first.
func (w *Writer) WriteRecordParts(parts [][]byte) error {
	if err := w.BufferRecordParts(parts); err != nil {
		return err
	}
	return w.flush()
}

// BufferRecordParts writes the concatenation of parts as one record without
// flushing: a stream writing many records at once flushes once, with Flush,
// instead of making a write for each.
func (w *Writer) BufferRecordParts(parts [][]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	hdr := strconv.AppendUint(w.hdr[:0], uint64(n), 10)
	hdr = append(hdr, '\n')
	if _, err := w.w.Write(hdr); err != nil {
		return fmt.Errorf("recordio: writing header: %w", err)
	}
	for _, p := range parts {
		if _, err := w.w.Write(p); err != nil {
			return fmt.Errorf("recordio: writing record: %w", err)
		}
	}
	return nil
}

// Flush flushes what was written, if the underlying writer can.
func (w *Writer) Flush() error { return w.flush() }

func (w *Writer) flush() error {
	var err error
	switch f := w.w.(type) {
	case interface{ FlushError() error }:
		// net/http's ResponseWriter: unlike Flush, reports a dead client.
		err = f.FlushError()
	case interface{ Flush() error }:
		err = f.Flush()
	case http.Flusher:
		f.Flush()
	}
	if err != nil {
		return fmt.Errorf("recordio: flushing: %w", err)
	}
	return nil
}

// Reader reads records from a byte stream. It is not safe for concurrent
// use.
type Reader struct {
	br  *bufio.Reader
	max uint64
}

// NewReader returns a Reader on r that refuses records larger than
// maxRecordSize bytes (DefaultMaxRecordSize if maxRecordSize <= 0).
func NewReader(r io.Reader, maxRecordSize int) *Reader {
	if maxRecordSize <= 0 {
		maxRecordSize = DefaultMaxRecordSize
	}
	return &Reader{br: bufio.NewReader(r), max: uint64(maxRecordSize)}
}

// ReadRecord returns the next record in a newly allocated slice the caller
// may keep. At a clean end of stream, between records, it returns io.EOF; a
// stream that ends inside a record gives an error wrapping
// io.ErrUnexpectedEOF. A bad header wraps ErrInvalidHeader, an oversized
// record ErrRecordTooLarge; after either the stream cannot be resynchronised
// and the caller should drop the connection.
func (r *Reader) ReadRecord() ([]byte, error) {
	n, err := r.readHeader()
	if err != nil {
		return nil, err
	}
	// Read big records in steps so that a lying header costs memory only as
	// fast as data actually arrives.
	const step = 1 << 20
	if n <= step {
		p := make([]byte, n)
		if _, err := io.ReadFull(r.br, p); err != nil {
			return nil, truncated(err, n)
		}
		return p, nil
	}
	var buf bytes.Buffer
	buf.Grow(step)
	if _, err := io.CopyN(&buf, r.br, int64(n)); err != nil {
		return nil, truncated(err, n)
	}
	return buf.Bytes(), nil
}

func truncated(err error, n uint64) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("recordio: reading %d-byte record: %w", n, err)
}

func (r *Reader) readHeader() (uint64, error) {
	var n uint64
	for digits := 0; ; digits++ {
		c, err := r.br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if digits == 0 {
					return 0, io.EOF
				}
				err = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("recordio: reading header: %w", err)
		}
		switch {
		case c == '\n' && digits > 0:
			if n > r.max {
				return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrRecordTooLarge, n, r.max)
			}
			return n, nil
		case c == '\n':
			return 0, fmt.Errorf("%w: empty length", ErrInvalidHeader)
		case c < '0' || c > '9':
			return 0, fmt.Errorf("%w: byte %q after %d digits", ErrInvalidHeader, c, digits)
		case digits == maxHeaderDigits:
			return 0, fmt.Errorf("%w: length longer than %d digits", ErrInvalidHeader, maxHeaderDigits)
		}
		d := uint64(c - '0')
		if n > (^uint64(0)-d)/10 {
			return 0, fmt.Errorf("%w: length overflows uint64", ErrInvalidHeader)
		}
		n = n*10 + d
	}
}
