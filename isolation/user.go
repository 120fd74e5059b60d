package isolation

import (
	"fmt"
	"os/user"
	"strconv"
	"syscall"

	"github.com/mesolite/mesolite/errdefs"
)

// User is who an executor runs as: its uid, primary gid and supplementary
// groups, resolved on the agent's host.
type User struct {
	Name   string   `json:"name"`
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups,omitempty"`
}

// LookupUser resolves name with its primary and supplementary groups. A
// user this host does not know is an errdefs.ErrNotFound.
func LookupUser(name string) (*User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %q does not exist on this agent: %w", name, errdefs.ErrNotFound)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %q has a non-numeric uid or gid: %w", name, errdefs.ErrInvalid)
	}
	out := &User{Name: name, UID: uint32(uid), GID: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				out.Groups = append(out.Groups, uint32(n))
			}
		}
	}
	return out, nil
}

// credential is what a child started as u gets.
func (u *User) credential() *syscall.Credential {
	if u == nil {
		return nil
	}
	groups := u.Groups
	if groups == nil {
		groups = []uint32{}
	}
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: groups}
}

// become switches this whole process (every thread: the syscall package
// does it on all of them) to u: groups first, then the gid, then the uid,
// which drops the right to change the other two.
func (u *User) become() error {
	if u == nil {
		return nil
	}
	groups := make([]int, len(u.Groups))
	for i, g := range u.Groups {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("set groups of %s: %w", u.Name, err)
	}
	if err := syscall.Setresgid(int(u.GID), int(u.GID), int(u.GID)); err != nil {
		return fmt.Errorf("set gid of %s: %w", u.Name, err)
	}
	if err := syscall.Setresuid(int(u.UID), int(u.UID), int(u.UID)); err != nil {
		return fmt.Errorf("set uid of %s: %w", u.Name, err)
	}
	return nil
}
