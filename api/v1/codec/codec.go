package codec

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

// The media types of the v1 API. Responses carry exactly these, with no
// parameters: some Mesos clients compare the Content-Type header verbatim.
const (
	MediaTypeJSON     = "application/json"
	MediaTypeProtobuf = "application/x-protobuf"
)

// Codec turns messages into bytes of one media type and back.
type Codec interface {
	// MediaType is the Content-Type this codec produces and consumes.
	MediaType() string
	// Marshal encodes m. It fails, wrapping errdefs.ErrInvalid, when a
	// required field is unset: sending such a message would only move the
	// failure to the peer.
	Marshal(m proto.Message) ([]byte, error)
	// Unmarshal replaces the contents of m with the decoded data. Malformed
	// data and missing required fields give an error wrapping
	// errdefs.ErrInvalid.
	Unmarshal(data []byte, m proto.Message) error
}

// The two codecs. They are stateless and safe for concurrent use.
var (
	JSON     Codec = jsonCodec{}
	Protobuf Codec = protobufCodec{}
)

// Errors for content negotiation. Both wrap errdefs.ErrInvalid and carry
// their status (415 and 406), so errdefs.HTTPError answers them right.
var (
	ErrUnsupportedMediaType = errdefs.WithStatus(http.StatusUnsupportedMediaType, fmt.Errorf("unsupported media type: %w", errdefs.ErrInvalid))
	ErrNotAcceptable        = errdefs.WithStatus(http.StatusNotAcceptable, fmt.Errorf("not acceptable: %w", errdefs.ErrInvalid))
)

// ForContentType returns the codec for a request's Content-Type header.
// Parameters such as charset are ignored and the comparison is
// case-insensitive. A missing or unsupported type gives an error wrapping
// ErrUnsupportedMediaType.
func ForContentType(header string) (Codec, error) {
	mt, _, _ := strings.Cut(header, ";")
	switch strings.ToLower(strings.TrimSpace(mt)) {
	case MediaTypeJSON:
		return JSON, nil
	case MediaTypeProtobuf:
		return Protobuf, nil
	case "":
		return nil, fmt.Errorf("missing Content-Type, want %s or %s: %w",
			MediaTypeJSON, MediaTypeProtobuf, ErrUnsupportedMediaType)
	default:
		return nil, fmt.Errorf("request Content-Type %q, want %s or %s: %w",
			header, MediaTypeJSON, MediaTypeProtobuf, ErrUnsupportedMediaType)
	}
}

// ForAccept returns the codec to answer with, given a request's Accept
// header (RFC 9110 section 12.5.1: media ranges, wildcards, q-values; the
// most specific matching range decides a type's quality).
//
// An empty header, or one with no parsable media range, means the client
// accepts anything and gives def (JSON if def is nil). On a tie between the
// two codecs def wins, then JSON, which is what Mesos answers `*/*` with. A
// header that accepts neither codec gives an error wrapping
// ErrNotAcceptable.
func ForAccept(header string, def Codec) (Codec, error) {
	if def == nil {
		def = JSON
	}
	ranges := parseAccept(header)
	if len(ranges) == 0 {
		return def, nil
	}
	var best Codec
	bestQ := 0.0
	for _, c := range []Codec{def, JSON, Protobuf} {
		if q := quality(ranges, c.MediaType()); q > bestQ {
			best, bestQ = c, q
		}
	}
	if best == nil {
		return nil, fmt.Errorf("request Accept %q admits neither %s nor %s: %w",
			header, MediaTypeJSON, MediaTypeProtobuf, ErrNotAcceptable)
	}
	return best, nil
}

type mediaRange struct {
	typ, sub string
	q        float64
}

// parseAccept parses the media ranges of an Accept header, skipping those
// that are malformed rather than failing the whole request over one.
func parseAccept(header string) []mediaRange {
	var out []mediaRange
	for part := range strings.SplitSeq(header, ",") {
		mt, params, _ := strings.Cut(part, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
		if mt == "*" {
			// Old clients (Java's URLConnection) send a bare "*".
			mt = "*/*"
		}
		typ, sub, ok := strings.Cut(mt, "/")
		if !ok || typ == "" || sub == "" || (typ == "*" && sub != "*") {
			continue
		}
		q, ok := parseQ(params)
		if !ok {
			continue
		}
		out = append(out, mediaRange{typ: typ, sub: sub, q: q})
	}
	return out
}

// parseQ finds the q parameter among a media range's parameters.
func parseQ(params string) (float64, bool) {
	for p := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || !(q >= 0 && q <= 1) {
			return 0, false
		}
		return q, true
	}
	return 1, true
}

// quality is the q-value the ranges give mediaType: that of the most
// specific matching range (exact beats type/* beats */*), the highest one if
// a range is repeated, and 0 if none matches.
func quality(ranges []mediaRange, mediaType string) float64 {
	typ, sub, _ := strings.Cut(mediaType, "/")
	bestSpec, q := -1, 0.0
	for _, r := range ranges {
		var spec int
		switch {
		case r.typ == typ && r.sub == sub:
			spec = 2
		case r.typ == typ && r.sub == "*":
			spec = 1
		case r.typ == "*" && r.sub == "*":
			spec = 0
		default:
			continue
		}
		switch {
		case spec > bestSpec:
			bestSpec, q = spec, r.q
		case spec == bestSpec:
			q = max(q, r.q)
		}
	}
	return q
}

type protobufCodec struct{}

func (protobufCodec) MediaType() string { return MediaTypeProtobuf }

func (protobufCodec) Marshal(m proto.Message) ([]byte, error) {
	if err := CheckRequired(m); err != nil {
		return nil, err
	}
	// Deterministic so that equal messages give equal bytes (map order).
	return proto.MarshalOptions{AllowPartial: true, Deterministic: true}.Marshal(m)
}

func (protobufCodec) Unmarshal(data []byte, m proto.Message) error {
	// AllowPartial: CheckRequired reports the missing field with its path,
	// which proto's own check does not.
	if err := (proto.UnmarshalOptions{AllowPartial: true}).Unmarshal(data, m); err != nil {
		return fmt.Errorf("%w: decoding %s from protobuf: %w",
			errdefs.ErrInvalid, m.ProtoReflect().Descriptor().FullName(), err)
	}
	return CheckRequired(m)
}
