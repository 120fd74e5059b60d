package dockertest

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestImagesBuildAndRun(t *testing.T) {
	Images(t)
	// Building again must be a no-op (the hash label matches).
	start := time.Now()
	if err := BuildImages(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second build took %s: images are rebuilt instead of reused", d)
	}
	tests := []struct {
		image string
		args  []string
		want  string
	}{
		{BusyboxImage, []string{"echo", "hi"}, "hi"},
		{EchoArgsImage, nil, "entrypoint: image-default-cmd"},
		{EchoArgsImage, []string{"a", "b"}, "entrypoint: a b"},
	}
	for _, tt := range tests {
		t.Run(tt.image+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			out, err := exec.Command("docker", append([]string{"run", "--rm", "--network=none", tt.image}, tt.args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("docker run: %v: %s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != tt.want {
				t.Errorf("output %q, want %q", got, tt.want)
			}
		})
	}
}
