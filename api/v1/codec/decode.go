package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// scalarName is the message that may also be written as a bare number.
// Mesos's own docs send TaskInfo.limits as {"cpus": "Infinity", "mem": 512}
// rather than {"cpus": {"value": "Infinity"}, ...}, so both are accepted.
const scalarName protoreflect.FullName = "mesos.v1.Value.Scalar"

// unmarshalJSON decodes data into m (reset first) following Mesos's parser:
// fields by proto name (lowerCamel JSON names too), unknown keys skipped,
// null meaning absent (also inside arrays and maps), unknown enum names
// dropped. It does not check required fields; the caller does.
func unmarshalJSON(data []byte, m proto.Message) error {
	proto.Reset(m)
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	tok, err := d.Token()
	if err != nil {
		return syntaxError(err)
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("want a JSON object, got %s", describe(tok))
	}
	if err := decodeFields(d, m.ProtoReflect(), ""); err != nil {
		return err
	}
	if tok, err := d.Token(); err != io.EOF {
		if err != nil {
			return syntaxError(err)
		}
		return fmt.Errorf("unexpected %s after the top-level object", describe(tok))
	}
	return nil
}

// decodeFields reads the members of an object whose '{' has been consumed.
func decodeFields(d *json.Decoder, m protoreflect.Message, path string) error {
	fields := m.Descriptor().Fields()
	for {
		tok, err := d.Token()
		if err != nil {
			return syntaxError(err)
		}
		if tok == json.Delim('}') {
			return nil
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("%s: want a member name, got %s", orTop(path), describe(tok))
		}
		fd := fields.ByName(protoreflect.Name(key))
		if fd == nil {
			fd = fields.ByJSONName(key)
		}
		if fd == nil {
			// A field of a newer Mesos, or a typo; Mesos ignores both.
			if err := skipValue(d); err != nil {
				return err
			}
			continue
		}
		fpath := join(path, string(fd.Name()))
		if isWellKnown(fd) {
			if err := decodeWellKnown(d, m, fd, fpath); err != nil {
				return err
			}
			continue
		}
		tok, err = d.Token()
		if err != nil {
			return syntaxError(err)
		}
		if tok == nil {
			// null: the field is absent. A repeated field reads as empty.
			m.Clear(fd)
			continue
		}
		switch {
		case fd.IsList():
			err = decodeList(d, m, fd, tok, fpath)
		case fd.IsMap():
			err = decodeMap(d, m, fd, tok, fpath)
		case isMessage(fd):
			err = decodeMessageValue(d, m.Mutable(fd).Message(), tok, fpath)
		default:
			var v protoreflect.Value
			var set bool
			v, set, err = decodeScalar(fd, tok, fpath)
			if err == nil && set {
				m.Set(fd, v)
			}
		}
		if err != nil {
			return err
		}
	}
}

func decodeList(d *json.Decoder, m protoreflect.Message, fd protoreflect.FieldDescriptor, tok json.Token, path string) error {
	if tok != json.Delim('[') {
		return fmt.Errorf("%s: want an array, got %s", path, describe(tok))
	}
	l := m.Mutable(fd).List()
	for i := 0; ; i++ {
		tok, err := d.Token()
		if err != nil {
			return syntaxError(err)
		}
		if tok == json.Delim(']') {
			return nil
		}
		if tok == nil {
			// Mesos skips null elements.
			continue
		}
		epath := path + "[" + strconv.Itoa(i) + "]"
		if isMessage(fd) {
			elem := l.NewElement()
			if err := decodeMessageValue(d, elem.Message(), tok, epath); err != nil {
				return err
			}
			l.Append(elem)
			continue
		}
		v, set, err := decodeScalar(fd, tok, epath)
		if err != nil {
			return err
		}
		if set {
			l.Append(v)
		}
	}
}

func decodeMap(d *json.Decoder, m protoreflect.Message, fd protoreflect.FieldDescriptor, tok json.Token, path string) error {
	if tok != json.Delim('{') {
		return fmt.Errorf("%s: want an object, got %s", path, describe(tok))
	}
	mp := m.Mutable(fd).Map()
	kd, vd := fd.MapKey(), fd.MapValue()
	for {
		tok, err := d.Token()
		if err != nil {
			return syntaxError(err)
		}
		if tok == json.Delim('}') {
			return nil
		}
		ks, ok := tok.(string)
		if !ok {
			return fmt.Errorf("%s: want a map key, got %s", path, describe(tok))
		}
		epath := path + "[" + strconv.Quote(ks) + "]"
		kv, _, err := decodeScalar(kd, ks, epath)
		if err != nil {
			return err
		}
		key := kv.MapKey()
		tok, err = d.Token()
		if err != nil {
			return syntaxError(err)
		}
		if tok == nil {
			continue
		}
		if isMessage(vd) {
			val := mp.NewValue()
			if err := decodeMessageValue(d, val.Message(), tok, epath); err != nil {
				return err
			}
			mp.Set(key, val)
			continue
		}
		v, set, err := decodeScalar(vd, tok, epath)
		if err != nil {
			return err
		}
		if set {
			mp.Set(key, v)
		}
	}
}

// decodeMessageValue decodes into m a value whose first token is tok.
func decodeMessageValue(d *json.Decoder, m protoreflect.Message, tok json.Token, path string) error {
	md := m.Descriptor()
	if md.FullName() == scalarName {
		switch tok.(type) {
		case json.Number, string:
			fd := md.Fields().ByName("value")
			v, _, err := decodeScalar(fd, tok, path)
			if err != nil {
				return err
			}
			m.Set(fd, v)
			return nil
		}
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("%s: want an object for %s, got %s", path, md.FullName(), describe(tok))
	}
	return decodeFields(d, m, path)
}

// decodeScalar converts one non-message token. set is false for values that
// are to be dropped: null, and enum names this build does not know (proto2
// semantics, and what Mesos does).
func decodeScalar(fd protoreflect.FieldDescriptor, tok json.Token, path string) (v protoreflect.Value, set bool, err error) {
	if tok == nil {
		return v, false, nil
	}
	bad := func(why string) (protoreflect.Value, bool, error) {
		return protoreflect.Value{}, false, fmt.Errorf("%s: %s for %v field, got %s", path, why, fd.Kind(), describe(tok))
	}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if b, ok := tok.(bool); ok {
			return protoreflect.ValueOfBool(b), true, nil
		}
		return bad("want true or false")
	case protoreflect.StringKind:
		if s, ok := tok.(string); ok {
			return protoreflect.ValueOfString(s), true, nil
		}
		return bad("want a string")
	case protoreflect.BytesKind:
		s, ok := tok.(string)
		if !ok {
			return bad("want a base64 string")
		}
		b, err := decodeBase64(s)
		if err != nil {
			return bad("invalid base64")
		}
		return protoreflect.ValueOfBytes(b), true, nil
	case protoreflect.EnumKind:
		switch t := tok.(type) {
		case string:
			if ev := fd.Enum().Values().ByName(protoreflect.Name(t)); ev != nil {
				return protoreflect.ValueOfEnum(ev.Number()), true, nil
			}
			return v, false, nil
		case json.Number:
			n, err := parseInt(string(t), 32)
			if err != nil {
				return bad("want an enum name or number")
			}
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), true, nil
		}
		return bad("want an enum name")
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		s, ok := numberText(tok)
		if !ok {
			return bad("want a number")
		}
		bits := 64
		if fd.Kind() == protoreflect.FloatKind {
			bits = 32
		}
		f, err := parseFloat(s, bits)
		if err != nil {
			return bad("want a number")
		}
		if bits == 32 {
			return protoreflect.ValueOfFloat32(float32(f)), true, nil
		}
		return protoreflect.ValueOfFloat64(f), true, nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		s, ok := numberText(tok)
		if !ok {
			return bad("want an integer")
		}
		n, err := parseInt(s, 32)
		if err != nil {
			return bad("want a 32-bit integer")
		}
		return protoreflect.ValueOfInt32(int32(n)), true, nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		s, ok := numberText(tok)
		if !ok {
			return bad("want an integer")
		}
		n, err := parseInt(s, 64)
		if err != nil {
			return bad("want a 64-bit integer")
		}
		return protoreflect.ValueOfInt64(n), true, nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		s, ok := numberText(tok)
		if !ok {
			return bad("want an integer")
		}
		n, err := parseUint(s, 32)
		if err != nil {
			return bad("want an unsigned 32-bit integer")
		}
		return protoreflect.ValueOfUint32(uint32(n)), true, nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		s, ok := numberText(tok)
		if !ok {
			return bad("want an integer")
		}
		n, err := parseUint(s, 64)
		if err != nil {
			return bad("want an unsigned 64-bit integer")
		}
		return protoreflect.ValueOfUint64(n), true, nil
	}
	return bad("unsupported")
}

// numberText accepts a JSON number or a string holding one: Mesos writes
// numbers, protojson-based clients write 64-bit integers as strings.
func numberText(tok json.Token) (string, bool) {
	switch t := tok.(type) {
	case json.Number:
		return string(t), true
	case string:
		return strings.TrimSpace(t), true
	}
	return "", false
}

func parseFloat(s string, bits int) (float64, error) {
	switch s {
	case "NaN":
		return math.NaN(), nil
	case "Infinity":
		return math.Inf(1), nil
	case "-Infinity":
		return math.Inf(-1), nil
	}
	f, err := strconv.ParseFloat(s, bits)
	if err != nil {
		return 0, err
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		// Only the spelled-out names mean non-finite values; "1e999" or
		// "inf" are errors, as in protojson.
		return 0, errors.New("out of range")
	}
	return f, nil
}

// parseInt takes plain integers and also integral values in exponent or
// fraction form (1e3, 5.0), which JavaScript serialisers produce.
func parseInt(s string, bits int) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, bits); err == nil {
		return n, nil
	}
	i, err := integral(s)
	if err != nil {
		return 0, err
	}
	if !i.IsInt64() {
		return 0, errors.New("out of range")
	}
	n := i.Int64()
	if bits == 32 && (n < math.MinInt32 || n > math.MaxInt32) {
		return 0, errors.New("out of range")
	}
	return n, nil
}

func parseUint(s string, bits int) (uint64, error) {
	if n, err := strconv.ParseUint(s, 10, bits); err == nil {
		return n, nil
	}
	i, err := integral(s)
	if err != nil {
		return 0, err
	}
	if !i.IsUint64() {
		return 0, errors.New("out of range")
	}
	n := i.Uint64()
	if bits == 32 && n > math.MaxUint32 {
		return 0, errors.New("out of range")
	}
	return n, nil
}

// integral parses a decimal that must denote an integer, exactly.
func integral(s string) (*big.Int, error) {
	// Bound the exponent before big.Float materialises 1e999999999.
	if e := strings.IndexAny(s, "eE"); e >= 0 {
		if exp, err := strconv.Atoi(strings.TrimPrefix(s[e+1:], "+")); err != nil || exp > 40 || exp < -40 {
			return nil, errors.New("exponent out of range")
		}
	}
	f, ok := new(big.Float).SetPrec(256).SetString(s)
	if !ok || !f.IsInt() {
		return nil, errors.New("not an integer")
	}
	i, _ := f.Int(nil)
	return i, nil
}

// decodeBase64 accepts standard and URL alphabets, padded or not: Mesos
// writes standard padded base64, and its docs show unpadded values.
func decodeBase64(s string) ([]byte, error) {
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	return enc.DecodeString(s)
}

func isWellKnown(fd protoreflect.FieldDescriptor) bool {
	return isMessage(fd) && fd.Message().FullName().Parent() == "google.protobuf"
}

// decodeWellKnown hands a google.protobuf.* value to protojson, which knows
// their special JSON forms. None of Mesos's messages use them; mesolite's
// own protocol might.
func decodeWellKnown(d *json.Decoder, m protoreflect.Message, fd protoreflect.FieldDescriptor, path string) error {
	var raw json.RawMessage
	if err := d.Decode(&raw); err != nil {
		return syntaxError(err)
	}
	if string(raw) == "null" {
		m.Clear(fd)
		return nil
	}
	dec := func(raw []byte, v protoreflect.Value) error {
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, v.Message().Interface()); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	}
	switch {
	case fd.IsList():
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return fmt.Errorf("%s: want an array: %w", path, err)
		}
		l := m.Mutable(fd).List()
		for _, e := range elems {
			v := l.NewElement()
			if err := dec(e, v); err != nil {
				return err
			}
			l.Append(v)
		}
		return nil
	case fd.IsMap():
		return fmt.Errorf("%s: maps of well-known types are not supported", path)
	default:
		return dec(raw, m.Mutable(fd))
	}
}

// skipValue consumes one complete value.
func skipValue(d *json.Decoder) error {
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return syntaxError(err)
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

func syntaxError(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("syntax error: %w", err)
}

func describe(tok json.Token) string {
	switch t := tok.(type) {
	case nil:
		return "null"
	case json.Delim:
		switch t {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return strconv.Quote(t.String())
	case string:
		if len(t) > 40 {
			t = t[:40] + "..."
		}
		return "string " + strconv.Quote(t)
	case json.Number:
		return "number " + string(t)
	case bool:
		return strconv.FormatBool(t)
	}
	return fmt.Sprintf("%v", tok)
}

func orTop(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}
