package codec_test

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"testing"

	"github.com/mesolite/mesolite/api/v1/allocator"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/maintenance"
	"github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/quota"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// files are the protos whose every message the round-trip test covers.
var files = []protoreflect.FileDescriptor{
	mesos.File_mesos_v1_mesos_proto,
	scheduler.File_mesos_v1_scheduler_scheduler_proto,
	executor.File_mesos_v1_executor_executor_proto,
	master.File_mesos_v1_master_master_proto,
	quota.File_mesos_v1_quota_quota_proto,
	maintenance.File_mesos_v1_maintenance_maintenance_proto,
	allocator.File_mesos_v1_allocator_allocator_proto,
}

// populatedMessages returns one instance of every message type (nested ones
// included, map entries excluded) with every field set, filled generically
// through protoreflect so that a field added to a .proto is covered without
// touching the test.
func populatedMessages(t *testing.T) []proto.Message {
	t.Helper()
	var out []proto.Message
	var walk func(protoreflect.MessageDescriptors)
	walk = func(mds protoreflect.MessageDescriptors) {
		for i := range mds.Len() {
			md := mds.Get(i)
			if md.IsMapEntry() {
				continue
			}
			mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
			if err != nil {
				t.Fatalf("%s is not registered: %v", md.FullName(), err)
			}
			m := mt.New()
			f := filler{seed: i}
			f.fill(m, 0)
			out = append(out, m.Interface())
			walk(md.Messages())
		}
	}
	for _, fd := range files {
		walk(fd.Messages())
	}
	if len(out) < 150 {
		t.Fatalf("only %d message types found", len(out))
	}
	return out
}

type filler struct{ seed int }

func (f *filler) next() int {
	f.seed++
	return f.seed
}

// maxDepth bounds recursion through optional message fields (ContainerID
// holds a ContainerID); required ones are always filled.
const maxDepth = 4

func (f *filler) fill(m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.ContainingOneof() != nil && m.WhichOneof(fd.ContainingOneof()) != nil {
			continue
		}
		isMsg := fd.Kind() == protoreflect.MessageKind
		if depth >= maxDepth && fd.Cardinality() != protoreflect.Required && (isMsg || fd.IsMap()) {
			continue
		}
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range 2 {
				if isMsg {
					e := l.NewElement()
					f.fill(e.Message(), depth+1)
					l.Append(e)
				} else {
					l.Append(f.scalar(fd))
				}
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range 2 {
				k := f.scalar(fd.MapKey()).MapKey()
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					v := mp.NewValue()
					f.fill(v.Message(), depth+1)
					mp.Set(k, v)
				} else {
					mp.Set(k, f.scalar(fd.MapValue()))
				}
			}
		case isMsg:
			f.fill(m.Mutable(fd).Message(), depth+1)
		default:
			m.Set(fd, f.scalar(fd))
		}
	}
}

// scalar cycles through awkward values: extremes of every integer width
// (beyond 2^53, where JSON-as-float would lose digits), fractions, empty and
// non-ASCII strings, bytes that are not UTF-8.
func (f *filler) scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	n := f.next()
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(n%2 == 0)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32([]int32{math.MaxInt32, math.MinInt32, -1, int32(n)}[n%4])
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64([]int64{math.MaxInt64, math.MinInt64, 1<<53 + 1, int64(n)}[n%4])
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32([]uint32{math.MaxUint32, 0, uint32(n)}[n%3])
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64([]uint64{math.MaxUint64, 1<<53 + 1, 0, uint64(n)}[n%4])
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32([]float32{0.1, -3.5e-9, 1e30, float32(n)}[n%4])
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64([]float64{0.1, -2.5e-300, 1.7976931348623157e308, 1e21, float64(n) / 3}[n%5])
	case protoreflect.StringKind:
		return protoreflect.ValueOfString([]string{"", "plain-" + strconv.Itoa(n), "ünï \"q\" \\ \n\t\u2028 😀", "</script>&"}[n%4])
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{0xff, 0x00, byte(n), '"'}[:n%5])
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(n % vals.Len()).Number())
	}
	panic("unhandled kind " + fd.Kind().String())
}

// TestRoundTripEveryMessage: every message type, fully populated, survives
// both encodings, and the JSON form holds no quoted integers.
func TestRoundTripEveryMessage(t *testing.T) {
	for _, m := range populatedMessages(t) {
		name := string(m.ProtoReflect().Descriptor().FullName())
		t.Run(name, func(t *testing.T) {
			assertRoundTrip(t, m)
			b, err := codec.JSON.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(b) {
				t.Fatalf("invalid JSON: %s", b)
			}
			assertNumbersUnquoted(t, m.ProtoReflect(), b)
		})
	}
}

// assertNumbersUnquoted decodes the JSON generically and checks that every
// integer field came out as a JSON number.
func assertNumbersUnquoted(t *testing.T, m protoreflect.Message, b []byte) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var doc any
	if err := d.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	var check func(md protoreflect.MessageDescriptor, v any, path string)
	check = func(md protoreflect.MessageDescriptor, v any, path string) {
		obj, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: want an object, got %T", path, v)
		}
		for k, fv := range obj {
			fd := md.Fields().ByName(protoreflect.Name(k))
			if fd == nil {
				t.Fatalf("%s: unexpected key %q", path, k)
			}
			elems := []any{fv}
			switch {
			case fd.IsList():
				elems = fv.([]any)
			case fd.IsMap():
				elems = nil
				for _, mv := range fv.(map[string]any) {
					elems = append(elems, mv)
				}
				fd = fd.MapValue()
			}
			for _, e := range elems {
				switch fd.Kind() {
				case protoreflect.MessageKind:
					check(fd.Message(), e, path+"."+k)
				case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Uint32Kind,
					protoreflect.Uint64Kind, protoreflect.Sint32Kind, protoreflect.Sint64Kind,
					protoreflect.Fixed32Kind, protoreflect.Fixed64Kind,
					protoreflect.Sfixed32Kind, protoreflect.Sfixed64Kind:
					if _, ok := e.(json.Number); !ok {
						t.Errorf("%s.%s: integer written as %T %v, want a JSON number", path, k, e, e)
					}
				}
			}
		}
	}
	check(m.Descriptor(), doc, string(m.Descriptor().FullName()))
}
