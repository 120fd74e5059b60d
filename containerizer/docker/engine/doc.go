// Package engine is mesolite's small wrapper over the Docker Engine API
// client: the handful of operations the docker containerizer and the docker
// executor need (image inspect and pull with progress, create, attach,
// start, wait, stop with a grace period, remove, list by label, stats,
// update), with errors classified into errdefs classes so callers can tell
// "dockerd is down" (errdefs.ErrUnavailable) from "no such container"
// (errdefs.ErrNotFound) without parsing messages.
//
// It also owns the naming and labelling scheme that makes a container
// recognisably ours: the name mesolite-<container id> and the labels below.
// Ownership is decided by labels only, never by name: a container named
// mesolite-foo without our owner label belongs to somebody else.
//
// The package knows nothing of Mesos; the docker containerizer translates
// ContainerInfo into the Docker configuration types it takes.
package engine
