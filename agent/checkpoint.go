package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mesolite/mesolite/api/v1/codec"
	"google.golang.org/protobuf/proto"
)

// meta is the checkpoint layout under <work_dir>/meta, mirroring Mesos's:
//
//	meta/slaves/latest                        -> <agent_id>
//	meta/slaves/<agent>/agent.info
//	meta/slaves/<agent>/frameworks/<fw>/framework.info
//	  .../executors/<ex>/executor.info
//	  .../executors/<ex>/runs/<container>/handle.json
//	  .../executors/<ex>/runs/<container>/terminated      (marker)
//	  .../executors/<ex>/runs/<container>/tasks/<task>/task.info
//	  .../executors/<ex>/runs/<container>/tasks/<task>/task.updates
type meta struct{ root string }

func (m meta) latest() string               { return filepath.Join(m.root, "slaves", "latest") }
func (m meta) agent(id string) string       { return filepath.Join(m.root, "slaves", id) }
func (m meta) framework(a, f string) string { return filepath.Join(m.agent(a), "frameworks", f) }
func (m meta) executor(a, f, e string) string {
	return filepath.Join(m.framework(a, f), "executors", e)
}
func (m meta) run(a, f, e, c string) string { return filepath.Join(m.executor(a, f, e), "runs", c) }
func (m meta) task(a, f, e, c, t string) string {
	return filepath.Join(m.run(a, f, e, c), "tasks", t)
}

// writeFileAtomic writes data so a crash leaves either the old or the new
// content, never a torn file. Checkpoints are the agent's alone and hold
// what frameworks sent (URIs with credentials, environment, task data):
// mode 0600.
func writeFileAtomic(path string, data []byte) error {
	return writeFileAtomicMode(path, data, 0o600)
}

func writeFileAtomicMode(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	// A temporary name of its own: two writers of one checkpoint (two
	// executors of a framework launching at once) must not share it.
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	tmp := f.Name()
	if err := f.Chmod(mode); err != nil {
		f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	_, werr := f.Write(data)
	// The data reaches the disk before the rename makes it the checkpoint,
	// and the rename before the caller acts on it.
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return nil
}

// syncDir makes a directory's entries (a new or renamed file) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func checkpointProto(path string, m proto.Message) error {
	b, err := codec.JSON.Marshal(m)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return writeFileAtomic(path, b)
}

func readProto(path string, m proto.Message) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := codec.JSON.Unmarshal(b, m); err != nil {
		return fmt.Errorf("read checkpoint %s: %w", path, err)
	}
	return nil
}

// listDirs names the subdirectories of dir; a missing dir is empty.
func listDirs(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
