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
// edge, ToProto converts back. Parse reads the text and JSON forms of
// Mesos's --resources flag (and file:// values) into wire resources, Format
// writes the text form back; ParseAttributes reads --attributes with the
// same value syntax. The agent's and the cli's flags are read by Parse, and
// master, agent and cli count with the one arithmetic, so a resource means
// the same everywhere.
package resources
