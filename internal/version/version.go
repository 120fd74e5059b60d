// Package version holds the build's version, set with
// -ldflags "-X github.com/mesolite/mesolite/internal/version.Version=...".
package version

import "runtime/debug"

// Version of this build; "dev" unless set at link time.
var Version = "dev"

// MesosVersion is the Apache Mesos release whose APIs this build speaks;
// tools that gate features on the master's version read it.
const MesosVersion = "1.11.0"

// String is the version with the VCS revision when the build recorded one.
func String() string {
	v := Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v
}
