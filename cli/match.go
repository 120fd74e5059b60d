package cli

import (
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/resources"
)

// Offer matching lives in package resources (resources.Allocate), shared
// with the apps and jobs frameworks; these names keep the cli's callers
// short.

// errNoFit is wrapped by allocate's errors, which say what is missing.
var errNoFit = resources.ErrNoFit

// allocate takes want and pickPorts free ports out of offered: see
// resources.Allocate.
func allocate(offered, want []*mesos.Resource, pickPorts int) ([]*mesos.Resource, []uint64, error) {
	return resources.Allocate(offered, want, pickPorts)
}

// valueOf is a wire resource's value without its role: see
// resources.ValueOf.
func valueOf(r *mesos.Resource) (resources.Resources, bool) { return resources.ValueOf(r) }

// withValue is a copy of r holding v: see resources.WithValue.
func withValue(r *mesos.Resource, v resources.Resources) *mesos.Resource {
	return resources.WithValue(r, v)
}

// describeResources renders resources in Mesos's text form for messages:
// cpus:0.1; mem:32; ports:[31000-31005].
func describeResources(rs []*mesos.Resource) string {
	if len(rs) == 0 {
		return "nothing"
	}
	return resources.Format(rs)
}
