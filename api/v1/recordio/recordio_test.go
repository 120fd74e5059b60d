package recordio_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

func TestWriterFormat(t *testing.T) {
	var buf bytes.Buffer
	w := recordio.NewWriter(&buf)
	for _, r := range []string{`{"type":"HEARTBEAT"}`, "", "x\ny"} {
		if err := w.WriteRecord([]byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	want := "20\n{\"type\":\"HEARTBEAT\"}0\n3\nx\ny"
	if got := buf.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A record written in parts is the record of their concatenation.
func TestWriterParts(t *testing.T) {
	var buf bytes.Buffer
	w := recordio.NewWriter(&buf)
	for _, parts := range [][][]byte{{[]byte(`{"type":`), nil, []byte(`"HEARTBEAT"}`)}, nil, {[]byte("x\n"), []byte("y")}} {
		if err := w.WriteRecordParts(parts); err != nil {
			t.Fatal(err)
		}
	}
	want := "20\n{\"type\":\"HEARTBEAT\"}0\n3\nx\ny"
	if got := buf.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

type flushCounter struct {
	bytes.Buffer
	flushes int
}

func (f *flushCounter) Flush() { f.flushes++ }

func TestWriterFlushes(t *testing.T) {
	t.Run("http.Flusher", func(t *testing.T) {
		var f flushCounter
		w := recordio.NewWriter(&f)
		for range 3 {
			if err := w.WriteRecord([]byte("abc")); err != nil {
				t.Fatal(err)
			}
		}
		if f.flushes != 3 {
			t.Errorf("flushed %d times, want 3", f.flushes)
		}
	})
	t.Run("bufio.Writer", func(t *testing.T) {
		var out bytes.Buffer
		bw := bufio.NewWriterSize(&out, 4096)
		if err := recordio.NewWriter(bw).WriteRecord([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		if out.String() != "3\nabc" {
			t.Errorf("bufio.Writer not flushed: underlying has %q", out.String())
		}
	})
	t.Run("http.ResponseWriter", func(t *testing.T) {
		rec := httptest.NewRecorder()
		if err := recordio.NewWriter(rec).WriteRecord([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		if !rec.Flushed {
			t.Error("ResponseRecorder not flushed")
		}
	})
}

func TestReaderRecords(t *testing.T) {
	in := "3\nabc0\n5\nx\ny\nz11\n{\"a\":\"123\"}"
	want := []string{"abc", "", "x\ny\nz", `{"a":"123"}`}
	// OneByteReader: records split across arbitrary chunk boundaries.
	for name, r := range map[string]io.Reader{
		"whole":    strings.NewReader(in),
		"one byte": iotest.OneByteReader(strings.NewReader(in)),
	} {
		t.Run(name, func(t *testing.T) {
			rr := recordio.NewReader(r, 0)
			for i, w := range want {
				got, err := rr.ReadRecord()
				if err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
				if string(got) != w {
					t.Errorf("record %d: got %q, want %q", i, got, w)
				}
			}
			if _, err := rr.ReadRecord(); err != io.EOF {
				t.Errorf("at end: got %v, want io.EOF", err)
			}
		})
	}
}

func TestReaderErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want error
	}{
		{"letter in header", "1a\nx", 0, recordio.ErrInvalidHeader},
		{"leading space", " 1\nx", 0, recordio.ErrInvalidHeader},
		{"sign", "-1\nx", 0, recordio.ErrInvalidHeader},
		{"crlf", "1\r\nx", 0, recordio.ErrInvalidHeader},
		{"empty header", "\nabc", 0, recordio.ErrInvalidHeader},
		{"too many digits", "000000000000000000001\nx", 0, recordio.ErrInvalidHeader},
		{"uint64 overflow", "18446744073709551616\n", 0, recordio.ErrInvalidHeader},
		{"oversize", "11\nhello world", 10, recordio.ErrRecordTooLarge},
		{"huge", "18446744073709551615\n", 0, recordio.ErrRecordTooLarge},
		{"truncated header", "12", 0, io.ErrUnexpectedEOF},
		{"truncated body", "5\nabc", 0, io.ErrUnexpectedEOF},
		{"truncated big body", "2000000\nabc", 0, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := recordio.NewReader(strings.NewReader(tt.in), tt.max).ReadRecord()
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReaderLargeRecord(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 300_000) // 3 MB, read in steps
	var buf bytes.Buffer
	if err := recordio.NewWriter(&buf).WriteRecord(big); err != nil {
		t.Fatal(err)
	}
	got, err := recordio.NewReader(&buf, 4<<20).ReadRecord()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Error("large record changed")
	}
}

func TestEncoderDecoder(t *testing.T) {
	events := []*scheduler.Event{
		{
			Type: scheduler.Event_SUBSCRIBED.Enum(),
			Subscribed: &scheduler.Event_Subscribed{
				FrameworkId:              &mesos.FrameworkID{Value: mesos.Ptr("fw-1")},
				HeartbeatIntervalSeconds: mesos.Ptr(15.0),
			},
		},
		{Type: scheduler.Event_HEARTBEAT.Enum()},
		{
			Type: scheduler.Event_OFFERS.Enum(),
			Offers: &scheduler.Event_Offers{Offers: []*mesos.Offer{{
				Id:          &mesos.OfferID{Value: mesos.Ptr("o-1")},
				FrameworkId: &mesos.FrameworkID{Value: mesos.Ptr("fw-1")},
				AgentId:     &mesos.AgentID{Value: mesos.Ptr("a-1")},
				Hostname:    mesos.Ptr("host"),
				Resources: []*mesos.Resource{{
					Name: mesos.Ptr("ports"),
					Type: mesos.Value_RANGES.Enum(),
					Ranges: &mesos.Value_Ranges{Range: []*mesos.Value_Range{
						{Begin: mesos.Ptr[uint64](31000), End: mesos.Ptr[uint64](32000)},
					}},
				}},
			}}},
		},
	}
	for _, c := range []codec.Codec{codec.JSON, codec.Protobuf} {
		t.Run(c.MediaType(), func(t *testing.T) {
			var buf bytes.Buffer
			enc := recordio.NewEncoder(&buf, c)
			for _, ev := range events {
				if err := enc.Encode(ev); err != nil {
					t.Fatal(err)
				}
			}
			dec := recordio.NewDecoder(iotest.HalfReader(&buf), c, 0)
			for i, want := range events {
				var got scheduler.Event
				if err := dec.Decode(&got); err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				if !proto.Equal(&got, want) {
					t.Errorf("event %d: got %v, want %v", i, &got, want)
				}
			}
			var ev scheduler.Event
			if err := dec.Decode(&ev); err != io.EOF {
				t.Errorf("at end: got %v, want io.EOF", err)
			}
		})
	}
}

func TestDecoderBadRecordKeepsStep(t *testing.T) {
	in := "5\n{bad}" + "20\n{\"type\":\"HEARTBEAT\"}"
	dec := recordio.NewDecoder(strings.NewReader(in), codec.JSON, 0)
	var ev scheduler.Event
	if err := dec.Decode(&ev); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("bad record: got %v, want an invalid-argument error", err)
	}
	if err := dec.Decode(&ev); err != nil || ev.GetType() != scheduler.Event_HEARTBEAT {
		t.Fatalf("next record: got %v, %v", &ev, err)
	}
}

func TestEncoderRejectsInvalid(t *testing.T) {
	var buf bytes.Buffer
	err := recordio.NewEncoder(&buf, codec.JSON).Encode(&scheduler.Event{
		Type:       scheduler.Event_SUBSCRIBED.Enum(),
		Subscribed: &scheduler.Event_Subscribed{},
	})
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("got %v, want an invalid-argument error", err)
	}
	if buf.Len() != 0 {
		t.Errorf("wrote %q for an invalid event", buf.String())
	}
}

var leadingZero = regexp.MustCompile(`0[0-9]`)

// FuzzRecordIOReader: arbitrary streams must give records or errors, never
// a panic, never a record over the limit, and records must re-encode to a
// prefix of the input.
func FuzzRecordIOReader(f *testing.F) {
	for _, s := range []string{
		"", "0\n", "3\nabc", "3\nabc3\ndef", "1a\n", "\n", "99999999999999999999999\n",
		"18446744073709551615\n", "5\nab", "2000000\nx", "3\r\nabc", "00003\nabc",
	} {
		f.Add([]byte(s))
	}
	const limit = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		r := recordio.NewReader(bytes.NewReader(data), limit)
		var re bytes.Buffer
		w := recordio.NewWriter(&re)
		for {
			rec, err := r.ReadRecord()
			if err != nil {
				break
			}
			if len(rec) > limit {
				t.Fatalf("record of %d bytes over the %d limit", len(rec), limit)
			}
			if err := w.WriteRecord(rec); err != nil {
				t.Fatal(err)
			}
		}
		// What was read re-encodes to the input's prefix, except that
		// leading zeros in a length are accepted but not reproduced.
		if !bytes.HasPrefix(data, re.Bytes()) && !leadingZero.Match(data) {
			t.Fatalf("re-encoded records %q are not a prefix of the input %q", re.Bytes(), data)
		}
	})
}
