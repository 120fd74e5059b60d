package validate

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mesolite/mesolite/errdefs"
)

// MaxIDLen is NAME_MAX on Linux: an id is one directory name.
const MaxIDLen = 255

// Caps on free text. Mesos has none; these are far above what any real
// framework sends and far below what would hurt a master's memory.
const (
	MaxNameLen      = 1024      // framework, task, executor names; hostnames; principals; roles
	MaxLabelLen     = 4096      // one label key or value
	MaxLabels       = 256       // labels per message
	MaxMessageLen   = 16 << 10  // a status message, a webui_url
	MaxDataLen      = 1 << 20   // TaskInfo.data, status data, framework messages
	MaxTaskInfoSize = 4 << 20   // one encoded TaskInfo
	MaxCallSize     = 64 << 20  // one encoded call (an ACCEPT of many tasks)
	MaxEnvVars      = 4096      // environment variables of one command
	MaxURIs         = 1024      // URIs of one command
	MaxArgLen       = 128 << 10 // one command value or argument
	MaxArgs         = 4096      // arguments of one command
	MaxRoles        = 128       // roles of one framework
	MaxCapabilities = 64        // capabilities of one framework (Mesos defines fewer than 20)
	// MaxFrameworkInfoSize bounds one encoded FrameworkInfo, whatever the
	// fields: the master keeps it, persists it and shows it in every state
	// answer, so it costs memory, disk and bandwidth for as long as the
	// framework lives.
	MaxFrameworkInfoSize = 256 << 10
	// MaxStatusSize bounds one encoded TaskStatus from an agent: its data
	// plus the rest.
	MaxStatusSize = MaxDataLen + 256<<10
)

// ID applies Mesos's rules for an id that becomes a path component: not
// empty, at most MaxIDLen bytes, not "." or "..", valid UTF-8, no '/' or
// '\\' and no control characters. kind names the field in the error
// ("task id"). The error wraps errdefs.ErrInvalid.
func ID(kind, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s must not be empty: %w", kind, errdefs.ErrInvalid)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%s is longer than %d bytes: %w", kind, MaxIDLen, errdefs.ErrInvalid)
	case id == "." || id == "..":
		return fmt.Errorf("%s %q is disallowed: %w", kind, id, errdefs.ErrInvalid)
	case !utf8.ValidString(id):
		return fmt.Errorf("%s %q is not valid UTF-8: %w", kind, strings.ToValidUTF8(id, "?"), errdefs.ErrInvalid)
	}
	for _, c := range id {
		if c == '/' || c == '\\' || c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return fmt.Errorf("%s %q contains invalid characters (a path separator or a control character): %w", kind, id, errdefs.ErrInvalid)
		}
	}
	return nil
}

// Text checks a free-text field against its cap. Empty text is valid.
func Text(kind, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes, more than the %d allowed: %w", kind, len(s), max, errdefs.ErrInvalid)
	}
	return nil
}
