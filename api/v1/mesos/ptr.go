package mesos

// Ptr returns a pointer to a copy of v. proto2 optional fields are pointers
// and Go has no literal for a pointer to a constant:
//
//	&mesos.TaskID{Value: mesos.Ptr("web-1")}
func Ptr[T any](v T) *T {
	return &v
}
