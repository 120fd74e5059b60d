package apps

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/google/uuid"
	"github.com/mesolite/mesolite/errdefs"
)

// PathID is an app's id as Marathon names apps: an absolute path of
// segments, "/prod/db/mysql", always in this canonical form (leading '/',
// no trailing one, no "." or ".." segments). Make one with ParsePathID.
type PathID string

// Root is the root group's id; no app has it.
const Root PathID = "/"

// segmentRE is Marathon's rule for one segment: dot-separated labels of
// lowercase letters and digits, with hyphens inside a label. (Marathon
// also takes "." and ".." as relative segments; ParsePathID resolves them.)
var segmentRE = regexp.MustCompile(`^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$`)

// Bounds on ids: they become task ids, DNS names (mesos-dns builds
// <app>.<framework>.mesos from them) and store keys.
const (
	maxSegmentLen = 63
	maxPathIDLen  = 200
)

// errPathID is the message Marathon gives for an id that breaks the rule.
const errPathID = "must fully match regular expression '^(([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])\\.)*([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])|(\\.|\\.\\.)$'"

// ParsePathID reads an app id, absolute ("/prod/web") or relative to base
// ("web", "../web"), and returns it in canonical form. Errors wrap
// errdefs.ErrInvalid with Marathon's wording.
func ParsePathID(s string, base PathID) (PathID, error) {
	if s == "" {
		return "", fmt.Errorf("id is empty: %w", errdefs.ErrInvalid)
	}
	if len(s) > 2*maxPathIDLen {
		return "", fmt.Errorf("id is longer than %d characters: %w", maxPathIDLen, errdefs.ErrInvalid)
	}
	var segs []string
	if !strings.HasPrefix(s, "/") && base != "" {
		segs = base.Segments()
	}
	for _, seg := range strings.Split(strings.Trim(s, "/"), "/") {
		switch {
		case seg == "" && s == "/":
		case seg == "":
			return "", fmt.Errorf("id %q has an empty segment: %w", s, errdefs.ErrInvalid)
		case seg == ".":
		case seg == "..":
			if len(segs) == 0 {
				return "", fmt.Errorf("id %q goes above the root: %w", s, errdefs.ErrInvalid)
			}
			segs = segs[:len(segs)-1]
		case len(seg) > maxSegmentLen:
			return "", fmt.Errorf("id segment %q is longer than %d characters: %w", seg, maxSegmentLen, errdefs.ErrInvalid)
		case !segmentRE.MatchString(seg):
			return "", fmt.Errorf("id %q: %s: %w", s, errPathID, errdefs.ErrInvalid)
		default:
			segs = append(segs, seg)
		}
	}
	p := PathID("/" + strings.Join(segs, "/"))
	if len(p) > maxPathIDLen {
		return "", fmt.Errorf("id is longer than %d characters: %w", maxPathIDLen, errdefs.ErrInvalid)
	}
	return p, nil
}

// Segments is the id's segments, none for the root.
func (p PathID) Segments() []string {
	t := strings.Trim(string(p), "/")
	if t == "" {
		return nil
	}
	return strings.Split(t, "/")
}

// Parent is the group the app is in.
func (p PathID) Parent() PathID {
	segs := p.Segments()
	if len(segs) <= 1 {
		return Root
	}
	return PathID("/" + strings.Join(segs[:len(segs)-1], "/"))
}

// Safe is the id with '/' as '_' and no leading one, "prod_db_mysql":
// Marathon's form in task ids and the text form of /v2/tasks.
func (p PathID) Safe() string { return strings.Join(p.Segments(), "_") }

// Hostname is the id's segments backwards, joined by '.',
// "mysql.db.prod": Marathon's task name, which mesos-dns turns into the
// app's DNS name.
func (p PathID) Hostname() string {
	segs := p.Segments()
	for i, j := 0, len(segs)-1; i < j; i, j = i+1, j-1 {
		segs[i], segs[j] = segs[j], segs[i]
	}
	return strings.Join(segs, ".")
}

// Contains says whether q is p or inside p's group.
func (p PathID) Contains(q PathID) bool {
	return p == Root || q == p || strings.HasPrefix(string(q), string(p)+"/")
}

// maxTaskIDLen bounds a task id given to the API.
const maxTaskIDLen = maxPathIDLen + 64

// NewTaskID makes a task id for an instance of app, as Marathon does:
// "prod_db_mysql.<uuid>".
func NewTaskID(app PathID) string { return app.Safe() + "." + uuid.NewString() }

// AppOfTaskID reads the app id back from a task id NewTaskID made. It
// cannot tell '_' from '/' in a segment, as Marathon cannot: segments
// have no '_', so none is lost.
func AppOfTaskID(taskID string) (PathID, error) {
	if taskID == "" || len(taskID) > maxTaskIDLen || strings.ContainsAny(taskID, "/ \t\r\n") {
		return "", fmt.Errorf("task id %.80q is not one of ours: %w", taskID, errdefs.ErrInvalid)
	}
	i := strings.LastIndexByte(taskID, '.')
	if i <= 0 {
		return "", fmt.Errorf("task id %.80q is not one of ours: %w", taskID, errdefs.ErrInvalid)
	}
	if _, err := uuid.Parse(taskID[i+1:]); err != nil {
		return "", fmt.Errorf("task id %.80q is not one of ours: %w", taskID, errdefs.ErrInvalid)
	}
	return ParsePathID("/"+strings.ReplaceAll(taskID[:i], "_", "/"), Root)
}
