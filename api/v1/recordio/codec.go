package recordio

import (
	"io"

	"github.com/mesolite/mesolite/api/v1/codec"
	"google.golang.org/protobuf/proto"
)

// Encoder writes messages, one per record, in a codec's encoding: the body
// of a SUBSCRIBE answer. Not safe for concurrent use.
type Encoder struct {
	w *Writer
	c codec.Codec
}

// NewEncoder returns an Encoder writing to w (flushed after every message,
// see NewWriter) with c.
func NewEncoder(w io.Writer, c codec.Codec) *Encoder {
	return &Encoder{w: NewWriter(w), c: c}
}

// Encode writes m as one record.
func (e *Encoder) Encode(m proto.Message) error {
	p, err := e.c.Marshal(m)
	if err != nil {
		return err
	}
	return e.w.WriteRecord(p)
}

// Decoder reads messages, one per record, in a codec's encoding: a client's
// view of a SUBSCRIBE stream of scheduler, executor or agent Events. Not
// safe for concurrent use.
type Decoder struct {
	r *Reader
	c codec.Codec
}

// NewDecoder returns a Decoder reading from r with c, refusing records over
// maxRecordSize bytes (DefaultMaxRecordSize if <= 0).
func NewDecoder(r io.Reader, c codec.Codec, maxRecordSize int) *Decoder {
	return &Decoder{r: NewReader(r, maxRecordSize), c: c}
}

// Decode reads the next record into m, replacing its contents. It returns
// io.EOF at a clean end of stream, the Reader's errors for bad framing, and
// the codec's (wrapping errdefs.ErrInvalid) for a record that does not
// decode; the stream stays in step after the latter, so a caller may log and
// go on.
func (d *Decoder) Decode(m proto.Message) error {
	p, err := d.r.ReadRecord()
	if err != nil {
		return err
	}
	return d.c.Unmarshal(p, m)
}
