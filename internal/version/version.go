// Package version holds the build's version, set with
// -ldflags "-X github.com/mesolite/mesolite/internal/version.Version=...".
package version

import (
	"runtime/debug"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

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

// Info is Mesos's VersionInfo, what /version answers and the operator
// API's GET_VERSION carries: the Mesos release spoken (tools gate features
// on it), with this build's own version as git_tag and its revision and
// commit time when the build recorded them.
type Info struct {
	Version   string  `json:"version"`
	BuildDate string  `json:"build_date,omitempty"`
	BuildTime float64 `json:"build_time,omitempty"`
	BuildUser string  `json:"build_user,omitempty"`
	GitSHA    string  `json:"git_sha,omitempty"`
	GitBranch string  `json:"git_branch,omitempty"`
	GitTag    string  `json:"git_tag,omitempty"`
}

// Get returns this build's Info.
func Get() Info {
	in := Info{Version: MesosVersion, GitTag: Version}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.GitSHA = s.Value
			case "vcs.time":
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
					in.BuildDate = t.UTC().Format("2006-01-02 15:04:05")
					in.BuildTime = float64(t.Unix())
				}
			}
		}
	}
	return in
}

// Proto is Info as the operator APIs' VersionInfo (GET_VERSION).
func (in Info) Proto() *mesos.VersionInfo {
	v := &mesos.VersionInfo{Version: proto.String(in.Version)}
	set := func(dst **string, s string) {
		if s != "" {
			*dst = proto.String(s)
		}
	}
	set(&v.BuildDate, in.BuildDate)
	set(&v.BuildUser, in.BuildUser)
	set(&v.GitSha, in.GitSHA)
	set(&v.GitBranch, in.GitBranch)
	set(&v.GitTag, in.GitTag)
	if in.BuildTime != 0 {
		v.BuildTime = proto.Float64(in.BuildTime)
	}
	return v
}
