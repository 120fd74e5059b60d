package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/go-units"
)

// ImageExists reports whether ref is present locally.
func (e *Engine) ImageExists(ctx context.Context, ref string) (bool, error) {
	_, err := e.cli.ImageInspect(ctx, ref)
	if err == nil {
		return true, nil
	}
	err = e.wrap("inspect image "+ref, err)
	if IsNotFound(err) {
		return false, nil
	}
	return false, err
}

// PullOptions says where a pull reports to.
type PullOptions struct {
	// RegistryAuth is the base64url JSON of a registry.AuthConfig, or empty.
	RegistryAuth string
	// Log receives one line per layer status change (not per progress tick,
	// which would fill a sandbox with noise).
	Log io.Writer
	// Progress, when set, receives a summary at most every Interval and once
	// more when the pull ends.
	Progress func(PullProgress)
	Interval time.Duration
}

// PullProgress summarizes a pull in flight.
type PullProgress struct {
	Image      string
	Layers     int   // layers seen so far
	LayersDone int   // pulled or already present
	Downloaded int64 // bytes downloaded of the layers whose size is known
	Total      int64 // their total size
	Elapsed    time.Duration
	Done       bool
}

func (p PullProgress) String() string {
	verb := "Pulling"
	if p.Done {
		verb = "Pulled"
	}
	s := fmt.Sprintf("%s image %s: %d/%d layers", verb, p.Image, p.LayersDone, p.Layers)
	if p.Total > 0 {
		s += fmt.Sprintf(", %s/%s", units.HumanSize(float64(p.Downloaded)), units.HumanSize(float64(p.Total)))
	}
	return s + fmt.Sprintf(" in %s", p.Elapsed.Round(100*time.Millisecond))
}

type layerState struct {
	status            string
	current, total    int64
	done, sizeIsKnown bool
}

// Pull pulls ref. A failure reported inside the progress stream (bad
// credentials, missing manifest) is returned with the engine's own message.
func (e *Engine) Pull(ctx context.Context, ref string, opts PullOptions) error {
	start := time.Now()
	rc, err := e.cli.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: opts.RegistryAuth})
	if err != nil {
		return e.wrap("pull image "+ref, err)
	}
	defer rc.Close()
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	interval := opts.Interval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	layers := map[string]*layerState{}
	summary := func(done bool) PullProgress {
		p := PullProgress{Image: ref, Layers: len(layers), Elapsed: time.Since(start), Done: done}
		for _, l := range layers {
			if l.done {
				p.LayersDone++
			}
			if l.sizeIsKnown {
				p.Total += l.total
				p.Downloaded += l.current
			}
		}
		return p
	}
	lastReport := time.Now()
	dec := json.NewDecoder(rc)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return e.wrap("pull image "+ref, fmt.Errorf("read pull progress: %w", err))
		}
		if m.Error != nil {
			fmt.Fprintf(logw, "Failed to pull image %s: %s\n", ref, m.Error.Message)
			return &Error{Op: "pull image " + ref, Err: errors.New(m.Error.Message)}
		}
		if m.ID == "" || !isLayerStatus(m.Status) {
			if m.Status != "" {
				if m.ID != "" {
					fmt.Fprintf(logw, "%s: %s\n", m.ID, m.Status)
				} else {
					fmt.Fprintln(logw, m.Status)
				}
			}
			continue
		}
		l := layers[m.ID]
		if l == nil {
			l = &layerState{}
			layers[m.ID] = l
		}
		switch m.Status {
		case "Downloading":
			if m.Progress != nil {
				l.current, l.total, l.sizeIsKnown = m.Progress.Current, m.Progress.Total, m.Progress.Total > 0
			}
		case "Download complete", "Verifying Checksum":
			if l.sizeIsKnown {
				l.current = l.total
			}
		case "Pull complete", "Already exists":
			l.done = true
			if l.sizeIsKnown {
				l.current = l.total
			}
		}
		if m.Status != l.status {
			l.status = m.Status
			if m.Status != "Downloading" && m.Status != "Extracting" || m.Progress == nil {
				fmt.Fprintf(logw, "%s: %s\n", m.ID, m.Status)
			} else {
				fmt.Fprintf(logw, "%s: %s %s\n", m.ID, m.Status, units.HumanSize(float64(m.Progress.Total)))
			}
		}
		if opts.Progress != nil && time.Since(lastReport) >= interval {
			lastReport = time.Now()
			opts.Progress(summary(false))
		}
	}
	final := summary(true)
	fmt.Fprintln(logw, final.String())
	if opts.Progress != nil {
		opts.Progress(final)
	}
	return nil
}

// isLayerStatus tells per-layer progress messages from the ones about the
// whole image ("Pulling from library/busybox", "Digest: ...").
func isLayerStatus(s string) bool {
	switch s {
	case "Pulling fs layer", "Waiting", "Downloading", "Verifying Checksum", "Download complete",
		"Extracting", "Pull complete", "Already exists":
		return true
	}
	return false
}
