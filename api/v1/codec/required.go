package codec

import (
	"fmt"
	"strconv"

	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// CheckRequired reports the first proto2 required field that m leaves unset,
// naming it by its path from m (accept.operations[0].launch.task_infos[1].name),
// in an error wrapping errdefs.ErrInvalid. Handlers that build messages from
// parts can use it before sending.
func CheckRequired(m proto.Message) error {
	// The generated fast path answers the common case, a complete message,
	// without walking anything.
	if proto.CheckInitialized(m) == nil {
		return nil
	}
	rm := m.ProtoReflect()
	if path, field, ok := firstMissing(rm, ""); ok {
		return fmt.Errorf("%w: %s: required field %q (%s) is not set",
			errdefs.ErrInvalid, rm.Descriptor().FullName(), path, field)
	}
	// Unreachable unless CheckInitialized and the walk disagree (extensions);
	// fall back to its message rather than claim success.
	return fmt.Errorf("%w: %w", errdefs.ErrInvalid, proto.CheckInitialized(m))
}

// firstMissing walks fields in declaration order, so the same message always
// names the same field.
func firstMissing(m protoreflect.Message, prefix string) (path string, field protoreflect.FullName, found bool) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		name := join(prefix, string(fd.Name()))
		if fd.Cardinality() == protoreflect.Required && !m.Has(fd) {
			return name, fd.FullName(), true
		}
		if !m.Has(fd) {
			continue
		}
		switch v := m.Get(fd); {
		case fd.IsList():
			if !isMessage(fd) {
				continue
			}
			l := v.List()
			for j := range l.Len() {
				if p, f, ok := firstMissing(l.Get(j).Message(), name+"["+strconv.Itoa(j)+"]"); ok {
					return p, f, true
				}
			}
		case fd.IsMap():
			if !isMessage(fd.MapValue()) {
				continue
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				path, field, found = firstMissing(mv.Message(), name+"["+strconv.Quote(k.String())+"]")
				return !found
			})
			if found {
				return path, field, true
			}
		case isMessage(fd):
			if p, f, ok := firstMissing(v.Message(), name); ok {
				return p, f, true
			}
		}
	}
	return "", "", false
}

func isMessage(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
