// Package composing routes launches between containerizers the way Mesos's
// `--containerizers=docker,mesos` does: a container of type DOCKER goes to
// the docker containerizer, anything else to the first enabled one that
// accepts it, in flag order. A container that needs a containerizer the
// agent was not started with fails with a message naming the flag.
package composing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/errdefs"
)

// Named is one enabled containerizer with its flag name ("docker", "mesos").
type Named struct {
	Name string
	containerizer.Containerizer
}

// Containerizer composes several.
type Containerizer struct {
	all []Named

	mu    sync.Mutex
	owner map[string]containerizer.Containerizer // container id -> its containerizer
	// parentOf maps nested container ids to their parents, so a destroyed
	// parent takes its nested ids out of owner.
	parentOf map[string]string
}

// New composes cs in order.
func New(cs ...Named) *Containerizer {
	return &Containerizer{all: cs, owner: map[string]containerizer.Containerizer{}, parentOf: map[string]string{}}
}

// Close closes the composed containerizers that can be (io.Closer).
func (c *Containerizer) Close() error {
	var errs []error
	for _, x := range c.all {
		if cl, ok := x.Containerizer.(io.Closer); ok {
			errs = append(errs, cl.Close())
		}
	}
	return errors.Join(errs...)
}

func (c *Containerizer) names() []string {
	var n []string
	for _, x := range c.all {
		n = append(n, x.Name)
	}
	return n
}

func wants(spec containerizer.LaunchSpec) string {
	ci := spec.Executor.GetContainer()
	if spec.Task != nil && spec.Task.GetContainer() != nil {
		ci = spec.Task.GetContainer()
	}
	// A nil ContainerInfo reads as DOCKER: proto2 defaults an enum to its first value.
	if ci != nil && ci.GetType() == mesos.ContainerInfo_DOCKER {
		return "docker"
	}
	return "mesos"
}

// Launch implements containerizer.Containerizer.
func (c *Containerizer) Launch(ctx context.Context, spec containerizer.LaunchSpec) (containerizer.Handle, error) {
	want := wants(spec)
	for _, x := range c.all {
		if x.Name != want {
			continue
		}
		h, err := x.Launch(ctx, spec)
		if errors.Is(err, containerizer.ErrNotSupported) {
			continue
		}
		if err == nil {
			c.mu.Lock()
			c.owner[spec.ContainerID] = x.Containerizer
			c.mu.Unlock()
		}
		return h, err
	}
	enabled := c.names()
	return containerizer.Handle{}, fmt.Errorf("%w: %w: this container needs the %s containerizer; start the agent with --containerizers=%s",
		containerizer.ErrLaunchFailed, containerizer.ErrNotEnabled, want, strings.Join(appendUnique(enabled, want), ","))
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func (c *Containerizer) of(id string) (containerizer.Containerizer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if x, ok := c.owner[id]; ok {
		return x, nil
	}
	return nil, containerizer.UnknownContainer(id)
}

// Wait implements containerizer.Containerizer.
func (c *Containerizer) Wait(ctx context.Context, id string) (containerizer.Termination, error) {
	x, err := c.of(id)
	if err != nil {
		return containerizer.Termination{}, err
	}
	return x.Wait(ctx, id)
}

// Update implements containerizer.Containerizer.
func (c *Containerizer) Update(ctx context.Context, id string, rs []*mesos.Resource) error {
	x, err := c.of(id)
	if err != nil {
		return err
	}
	return x.Update(ctx, id, rs)
}

// Usage implements containerizer.Containerizer.
func (c *Containerizer) Usage(ctx context.Context, id string) (*mesos.ResourceStatistics, error) {
	x, err := c.of(id)
	if err != nil {
		return nil, err
	}
	return x.Usage(ctx, id)
}

// Destroy implements containerizer.Containerizer.
func (c *Containerizer) Destroy(ctx context.Context, id string) error {
	x, err := c.of(id)
	if err != nil {
		return nil
	}
	if err := x.Destroy(ctx, id); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.owner, id)
	for n, p := range c.parentOf {
		if p == id {
			delete(c.owner, n)
			delete(c.parentOf, n)
		}
	}
	c.mu.Unlock()
	return nil
}

// Enter implements containerizer.Enterer when the owner does; for one
// that does not, ErrNotSupported.
func (c *Containerizer) Enter(ctx context.Context, id string, spec containerizer.EnterSpec) (containerizer.Entered, error) {
	x, err := c.of(id)
	if err != nil {
		return nil, err
	}
	en, ok := x.(containerizer.Enterer)
	if !ok {
		return nil, fmt.Errorf("container %s: %w: its containerizer cannot run commands inside it", id, containerizer.ErrNotSupported)
	}
	return en.Enter(ctx, id, spec)
}

var _ containerizer.Nester = (*Containerizer)(nil)

// AttachInput implements containerizer.InputAttacher when the owner does.
func (c *Containerizer) AttachInput(ctx context.Context, id string) (containerizer.Input, error) {
	x, err := c.of(id)
	if err != nil {
		return nil, err
	}
	ia, ok := x.(containerizer.InputAttacher)
	if !ok {
		return nil, fmt.Errorf("container %s was launched without a TTY (its containerizer gives none): it takes no input: %w", id, errdefs.ErrConflict)
	}
	return ia.AttachInput(ctx, id)
}

// nester is the owner of parent, when it nests.
func (c *Containerizer) nester(parent string) (containerizer.Nester, containerizer.Containerizer, error) {
	x, err := c.of(parent)
	if err != nil {
		return nil, nil, err
	}
	n, ok := x.(containerizer.Nester)
	if !ok {
		return nil, nil, fmt.Errorf("container %s: no nested cgroups: %w", parent, containerizer.ErrNotSupported)
	}
	return n, x, nil
}

// PrepareNested implements containerizer.Nester when the parent's owner
// does; the nested id is then routed to it as a container's is.
func (c *Containerizer) PrepareNested(ctx context.Context, parent, id string, rs []*mesos.Resource) error {
	n, x, err := c.nester(parent)
	if err != nil {
		return err
	}
	if err := n.PrepareNested(ctx, parent, id, rs); err != nil {
		return err
	}
	c.mu.Lock()
	c.owner[id] = x
	c.parentOf[id] = parent
	c.mu.Unlock()
	return nil
}

// SealNested implements containerizer.Nester.
func (c *Containerizer) SealNested(ctx context.Context, id string) error {
	x, err := c.of(id)
	if err != nil {
		return nil
	}
	if n, ok := x.(containerizer.Nester); ok {
		return n.SealNested(ctx, id)
	}
	return nil
}

// DestroyNested implements containerizer.Nester.
func (c *Containerizer) DestroyNested(ctx context.Context, id string) error {
	x, err := c.of(id)
	if err != nil {
		return nil
	}
	if n, ok := x.(containerizer.Nester); ok {
		if err := n.DestroyNested(ctx, id); err != nil {
			return err
		}
	}
	c.mu.Lock()
	delete(c.owner, id)
	delete(c.parentOf, id)
	c.mu.Unlock()
	return nil
}

// Nested implements containerizer.Nester.
func (c *Containerizer) Nested(ctx context.Context, parent string) ([]string, error) {
	n, _, err := c.nester(parent)
	if err != nil {
		return nil, err
	}
	return n.Nested(ctx, parent)
}

// Limitation implements containerizer.LimitationReporter when the owner does.
func (c *Containerizer) Limitation(ctx context.Context, id string) (containerizer.Termination, bool) {
	x, err := c.of(id)
	if err != nil {
		return containerizer.Termination{}, false
	}
	if lr, ok := x.(containerizer.LimitationReporter); ok {
		return lr.Limitation(ctx, id)
	}
	return containerizer.Termination{}, false
}

// Recover implements containerizer.Containerizer: each containerizer gets
// the handles it wrote.
func (c *Containerizer) Recover(ctx context.Context, handles []containerizer.Handle) error {
	var errs []error
	for _, x := range c.all {
		var mine []containerizer.Handle
		for _, h := range handles {
			if h.Containerizer == x.Name {
				mine = append(mine, h)
			}
		}
		if err := x.Recover(ctx, mine); err != nil {
			errs = append(errs, fmt.Errorf("%s containerizer: %w", x.Name, err))
			continue
		}
		ids, _ := x.Containers(ctx)
		c.mu.Lock()
		for _, id := range ids {
			c.owner[id] = x.Containerizer
		}
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Containers implements containerizer.Containerizer.
func (c *Containerizer) Containers(ctx context.Context) ([]string, error) {
	var out []string
	for _, x := range c.all {
		ids, err := x.Containers(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, ids...)
	}
	return out, nil
}
