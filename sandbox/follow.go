package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// FollowOptions tunes Follow. The zero value follows until ctx ends.
type FollowOptions struct {
	// Client makes the requests; nil uses a client without a timeout (a
	// stream lasts as long as the task). Set its Transport for TLS.
	Client *http.Client
	// Header is added to every request (Authorization, for instance).
	Header http.Header
	// Ended, when set, is asked every CheckInterval and before each
	// reconnect; once it says the task ended, Follow reads what is left of
	// the file without following and returns nil.
	Ended func() bool
	// CheckInterval between calls of Ended; 0 means 1s.
	CheckInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnects; 0 means
	// 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// OnEvent, when set, hears every event but data (heartbeat, truncated,
	// rotated, deleted, eof) with the offset it carries.
	OnEvent func(event string, offset int64)
}

// Follow copies the file at virtual path p on the agent at baseURL
// (http://host:5051) to w, from offset, and keeps following it: across log
// rotation (the rest of the old file, then the new one from 0), truncation,
// and dropped connections, which it reopens from the last offset it wrote.
// It returns the offset reached in the current file and:
//
//   - nil when opts.Ended reports the task ended and the rest was read;
//   - ctx's error when ctx ends;
//   - an error wrapping errdefs.ErrGone when the file was deleted or its
//     sandbox collected;
//   - an error wrapping errdefs.ErrInvalid, ErrUnauthorized or ErrForbidden
//     for answers that retrying cannot fix, and ErrNotFound for a missing
//     file when there is no Ended to wait for (with Ended, a missing file is
//     waited for: a staging task has no stdout yet).
func Follow(ctx context.Context, baseURL, p string, offset int64, w io.Writer, opts FollowOptions) (int64, error) {
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(5*time.Second, opts.MinBackoff)
	}
	f := &follower{opts: opts, base: strings.TrimRight(baseURL, "/"), path: p, w: w, off: offset}
	backoff := opts.MinBackoff
	for {
		if err := ctx.Err(); err != nil {
			return f.off, err
		}
		ended := opts.Ended != nil && opts.Ended()
		progressed, err := f.once(ctx, !ended)
		switch {
		case err == nil || errors.Is(err, errStreamEnd):
			if ended {
				return f.off, nil
			}
		case errors.Is(err, errEnded):
			// The task ended while we followed: one last pass without
			// following picks up the rest.
			continue
		case ctx.Err() != nil:
			return f.off, ctx.Err()
		case errors.Is(err, errdefs.ErrGone), errors.Is(err, errdefs.ErrInvalid),
			errors.Is(err, errdefs.ErrUnauthorized), errors.Is(err, errdefs.ErrForbidden),
			errors.Is(err, errWrite):
			return f.off, err
		case errors.Is(err, errdefs.ErrNotFound):
			if opts.Ended == nil || ended {
				return f.off, err
			}
		}
		if progressed {
			backoff = opts.MinBackoff
		}
		select {
		case <-ctx.Done():
			return f.off, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, opts.MaxBackoff)
	}
}

var (
	errEnded = errors.New("task ended")
	errWrite = errors.New("write")
)

type follower struct {
	opts FollowOptions
	base string
	path string
	w    io.Writer
	off  int64
}

// once runs one request. progressed says whether it got as far as an
// answer with a stream, so the caller can reset its backoff.
func (f *follower) once(ctx context.Context, follow bool) (progressed bool, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if follow && f.opts.Ended != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(f.opts.CheckInterval)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					if f.opts.Ended() {
						cancel(errEnded)
						return
					}
				}
			}
		}()
	}
	q := url.Values{"path": {f.path}, "offset": {strconv.FormatInt(f.off, 10)}, "follow": {strconv.FormatBool(follow)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.base+"/files/stream?"+q.Encode(), nil)
	if err != nil {
		return false, fmt.Errorf("follow %s: %w: %w", f.path, errdefs.ErrInvalid, err)
	}
	for k, vs := range f.opts.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := f.opts.Client.Do(req)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errEnded) {
			return false, errEnded
		}
		return false, fmt.Errorf("follow %s: %w", f.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return false, statusError(resp.StatusCode, f.path, strings.TrimSpace(string(msg)))
	}
	err = f.read(resp.Body)
	if cause := context.Cause(ctx); errors.Is(cause, errEnded) {
		return true, errEnded
	}
	return true, err
}

// read consumes events until the stream ends.
func (f *follower) read(body io.Reader) error {
	br := bufio.NewReaderSize(body, 64<<10)
	var event string
	var data []byte
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long data line: collect it whole.
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("follow %s: stream closed: %w", f.path, io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("follow %s: %w", f.path, err)
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if event != "" || data != nil {
				if err := f.handle(event, data); err != nil {
					return err
				}
			}
			event, data = "", nil
		case bytes.HasPrefix(line, []byte("event:")):
			event = string(bytes.TrimSpace(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			d := bytes.TrimPrefix(line[len("data:"):], []byte(" "))
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, d...)
		}
	}
}

type streamEvent struct {
	Offset int64           `json:"offset"`
	Data   json.RawMessage `json:"data"`
}

func (f *follower) handle(event string, payload []byte) error {
	var ev streamEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return fmt.Errorf("follow %s: bad %s event: %w", f.path, event, err)
	}
	switch event {
	case EventData, "", "message":
		b, err := DecodeJSONString(ev.Data)
		if err != nil {
			return fmt.Errorf("follow %s: bad data event: %w", f.path, err)
		}
		if skip := f.off - ev.Offset; skip > 0 {
			// Bytes we already wrote (a server that resent them).
			if skip >= int64(len(b)) {
				return nil
			}
			b = b[skip:]
			ev.Offset = f.off
		}
		if _, err := f.w.Write(b); err != nil {
			return fmt.Errorf("follow %s: %w: %w", f.path, errWrite, err)
		}
		f.off = ev.Offset + int64(len(b))
		return nil
	}
	if f.opts.OnEvent != nil {
		f.opts.OnEvent(event, ev.Offset)
	}
	switch event {
	case EventTruncated, EventRotated:
		f.off = ev.Offset
	case EventDeleted:
		return fmt.Errorf("follow %s: file deleted: %w", f.path, errdefs.ErrGone)
	case EventEOF:
		return errStreamEnd
	}
	return nil
}

// statusError turns an error answer into an errdefs class.
func statusError(code int, p, msg string) error {
	var class error
	switch {
	case code == http.StatusBadRequest:
		class = errdefs.ErrInvalid
	case code == http.StatusUnauthorized:
		class = errdefs.ErrUnauthorized
	case code == http.StatusForbidden:
		class = errdefs.ErrForbidden
	case code == http.StatusNotFound && strings.Contains(msg, "garbage collected"):
		class = errdefs.ErrGone
	case code == http.StatusNotFound:
		class = errdefs.ErrNotFound
	default:
		class = errdefs.ErrUnavailable
	}
	return fmt.Errorf("follow %s: %d %s: %w", p, code, msg, class)
}
