// Package resources is the one Mesos resource arithmetic of master, agent
// and cli: scalars (cpus, mem, disk, gpus), ranges (ports) and sets, grouped
// by name and reservation role.
//
// A Resources value is normalised (one entry per name, role and kind, sorted,
// no empty entries), so equal resources compare equal and every operation is
// exact: scalars are kept in thousandths, as Mesos's fixed-point
// Value::Scalar is, so 0.1+0.2 is exactly 0.3 and a subtraction never leaves
// a crumb of 1e-17 cpus behind. Values are immutable; operations return new
// ones, so a Resources can be shared between the allocator, offers and tasks.
//
// The wire type is mesos.Resource; FromProto validates and converts at the
// edge, ToProto converts back.
package resources
