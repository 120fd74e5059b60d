package codec

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

type jsonCodec struct{}

func (jsonCodec) MediaType() string { return MediaTypeJSON }

// Marshal writes m the way Mesos does: proto field names, set fields only,
// in declaration order, enums by name, bytes as standard base64, and every
// integer, 64-bit ones included, as a JSON number. Map entries are sorted by
// key so that equal messages give equal bytes.
func (jsonCodec) Marshal(m proto.Message) ([]byte, error) {
	if err := CheckRequired(m); err != nil {
		return nil, err
	}
	return appendMessage(make([]byte, 0, 256), m.ProtoReflect())
}

// Unmarshal reads JSON as Mesos does (see unmarshalJSON), and also takes
// 64-bit integers as strings, the way protojson writes them.
func (jsonCodec) Unmarshal(data []byte, m proto.Message) error {
	if err := unmarshalJSON(data, m); err != nil {
		return fmt.Errorf("%w: decoding %s from JSON: %w",
			errdefs.ErrInvalid, m.ProtoReflect().Descriptor().FullName(), err)
	}
	return CheckRequired(m)
}

func appendMessage(b []byte, m protoreflect.Message) ([]byte, error) {
	md := m.Descriptor()
	if md.FullName().Parent() == "google.protobuf" {
		// Well-known types have JSON forms of their own (Timestamp as a
		// string, Struct as an object...); protojson knows them and the
		// decoder expects them.
		wkt, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m.Interface())
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", md.FullName(), err)
		}
		return append(b, wkt...), nil
	}
	b = append(b, '{')
	fields := md.Fields()
	first := true
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, string(fd.Name()))
		b = append(b, ':')
		var err error
		switch v := m.Get(fd); {
		case fd.IsList():
			b, err = appendList(b, fd, v.List())
		case fd.IsMap():
			b, err = appendMap(b, fd, v.Map())
		default:
			b, err = appendValue(b, fd, v)
		}
		if err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func appendList(b []byte, fd protoreflect.FieldDescriptor, l protoreflect.List) ([]byte, error) {
	b = append(b, '[')
	for i := range l.Len() {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendValue(b, fd, l.Get(i)); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

func appendMap(b []byte, fd protoreflect.FieldDescriptor, mp protoreflect.Map) ([]byte, error) {
	keys := make([]protoreflect.MapKey, 0, mp.Len())
	mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	kind := fd.MapKey().Kind()
	slices.SortFunc(keys, func(x, y protoreflect.MapKey) int {
		switch kind {
		case protoreflect.BoolKind:
			return cmp.Compare(boolInt(x.Bool()), boolInt(y.Bool()))
		case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
			protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
			return cmp.Compare(x.Int(), y.Int())
		case protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
			protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
			return cmp.Compare(x.Uint(), y.Uint())
		default:
			return strings.Compare(x.String(), y.String())
		}
	})
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		// JSON object keys are strings whatever the proto key type.
		b = appendString(b, k.String())
		b = append(b, ':')
		var err error
		if b, err = appendValue(b, fd.MapValue(), mp.Get(k)); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// appendValue writes one singular value (a field, a list element or a map
// value) of the kind fd declares.
func appendValue(b []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) ([]byte, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return strconv.AppendBool(b, v.Bool()), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		// Numbers, not protojson's strings: this is the point of the encoder.
		return strconv.AppendInt(b, v.Int(), 10), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.AppendUint(b, v.Uint(), 10), nil
	case protoreflect.FloatKind:
		return appendFloat(b, v.Float(), 32), nil
	case protoreflect.DoubleKind:
		return appendFloat(b, v.Float(), 64), nil
	case protoreflect.StringKind:
		return appendString(b, v.String()), nil
	case protoreflect.BytesKind:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, v.Bytes())
		return append(b, '"'), nil
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return appendString(b, string(ev.Name())), nil
		}
		// A number this build does not know (from a newer peer): keep it.
		return strconv.AppendInt(b, int64(v.Enum()), 10), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return appendMessage(b, v.Message())
	default:
		return nil, fmt.Errorf("encoding %s: unsupported kind %v", fd.FullName(), fd.Kind())
	}
}

// appendFloat writes f as encoding/json does (plain decimals in the usual
// range, exponents outside it), and the non-finite values as the strings
// protojson uses, since JSON has no literal for them.
func appendFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// 1e-07 -> 1e-7, as encoding/json writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string. Invalid UTF-8 (proto2 strings are
// not checked) becomes U+FFFD rather than invalid JSON; U+2028 and U+2029 are
// escaped because JavaScript string literals cannot hold them.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}
