package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/mesolite/mesolite/internal/testutil"
)

// Tags of the test images built from testdata/docker.
const (
	// BusyboxImage has busybox's applets in /bin and CMD ["sh"].
	BusyboxImage = "mesolite-test/busybox:latest"
	// EchoArgsImage has ENTRYPOINT ["/bin/echo", "entrypoint:"] and CMD
	// ["image-default-cmd"]: its stdout shows what the container was given.
	EchoArgsImage = "mesolite-test/echo-args:latest"
	// HTTPImage serves "hello from mesolite-test/httpd" on port 8080.
	HTTPImage = "mesolite-test/httpd:latest"
	// HTTPBody is what HTTPImage answers on /.
	HTTPBody = "hello from mesolite-test/httpd\n"
)

// BusyboxPath is the static busybox copied into the base image.
const BusyboxPath = "/bin/busybox"

const hashLabel = "org.mesolite.test.hash"

type testImage struct {
	dir    string // under testdata/docker
	tag    string
	parent string // tag of the image it is built FROM, built first
}

// Built in this order: children after their parent.
var testImages = []testImage{
	{dir: "busybox", tag: BusyboxImage},
	{dir: "echo-args", tag: EchoArgsImage, parent: BusyboxImage},
	{dir: "httpd", tag: HTTPImage, parent: BusyboxImage},
}

var (
	imagesOnce sync.Once
	imagesErr  error
)

// Images makes sure dockerd answers (RequireDocker) and that the test images
// exist and are current, building them from testdata/docker when their inputs
// changed. Several test binaries may call it at once: a file lock serialises
// the builds.
func Images(t testing.TB) {
	t.Helper()
	testutil.RequireDocker(t)
	imagesOnce.Do(func() { imagesErr = BuildImages(context.Background()) })
	if imagesErr != nil {
		t.Fatalf("build test images: %v", imagesErr)
	}
}

// BuildImages builds the test images that are missing or stale.
func BuildImages(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	unlock, err := lockFile(filepath.Join(os.TempDir(), "mesolite-test-images.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	hashes := map[string]string{}
	for _, img := range testImages {
		files, err := contextFiles(filepath.Join(root, "testdata", "docker", img.dir), img.tag == BusyboxImage)
		if err != nil {
			return fmt.Errorf("%s: %w", img.tag, err)
		}
		sum := hashFiles(files, hashes[img.parent])
		hashes[img.tag] = sum
		if ins, err := cli.ImageInspect(ctx, img.tag); err == nil && ins.Config != nil && ins.Config.Labels[hashLabel] == sum {
			continue
		}
		if err := buildImage(ctx, cli, img.tag, files, sum); err != nil {
			return fmt.Errorf("build %s: %w", img.tag, err)
		}
	}
	return nil
}

// RepoRoot is the module root, found from this source file so that tests
// in any package reach testdata/docker.
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate dockertest source file")
	}
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above " + filepath.Dir(file))
		}
		dir = parent
	}
}

// contextFiles reads the build context: every regular file of dir, plus
// the static busybox for the base image.
func contextFiles(dir string, withBusybox bool) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files[e.Name()] = b
	}
	if withBusybox {
		b, err := os.ReadFile(BusyboxPath)
		if err != nil {
			return nil, fmt.Errorf("the test images need a static busybox (Debian's busybox-static): %w", err)
		}
		files["busybox"] = b
	}
	return files, nil
}

func hashFiles(files map[string][]byte, parentHash string) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	fmt.Fprintf(h, "parent %s\n", parentHash)
	for _, n := range names {
		fmt.Fprintf(h, "%s %d\n", n, len(files[n]))
		h.Write(files[n])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func buildImage(ctx context.Context, cli *client.Client, tag string, files map[string][]byte, sum string) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		mode := int64(0o644)
		if n == "busybox" {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: mode, Size: int64(len(files[n])), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := tw.Write(files[n]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{
		Tags:        []string{tag},
		Labels:      map[string]string{hashLabel: sum},
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	if err := jsonmessage.DisplayJSONMessagesStream(resp.Body, &out, 0, false, nil); err != nil {
		return fmt.Errorf("%w\n%s", err, out.String())
	}
	return nil
}

func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
