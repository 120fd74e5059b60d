package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// Task logs rotate at --container_logger_max_size, keeping
// --container_logger_max_files, and the files API lists the rotated files.
func TestTaskLogsRotate(t *testing.T) {
	c := startCluster(t, "--container_logger_max_size=4KB", "--container_logger_max_files=3")
	out, code := mesolite(t, 60*time.Second, "run", "--master="+c.masterAddr, "--name=chatty", "--id=chatty-1",
		"--command=i=0; while [ $i -lt 400 ]; do echo line $i of a chatty task; i=$((i+1)); done")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	fw := regexp.MustCompile(`/frameworks/([^/\s]+)/executors/chatty-1`).FindStringSubmatch(out)
	if fw == nil {
		t.Fatalf("no sandbox path:\n%s", out)
	}
	var entries []struct {
		Path string `json:"path"`
		Size int64  `json:"size"`
	}
	if err := getJSON("http://"+c.agentAddr+"/files/browse?path=/frameworks/"+fw[1]+"/executors/chatty-1/runs/latest", &entries); err != nil {
		t.Fatal(err)
	}
	names := map[string]int64{}
	for _, e := range entries {
		names[e.Path[strings.LastIndex(e.Path, "/")+1:]] = e.Size
	}
	for _, want := range []string{"stdout", "stdout.1", "stdout.2"} {
		size, ok := names[want]
		if !ok || size > 4096 {
			t.Errorf("%s: present %v, size %d (want <= 4KB); files %v", want, ok, size, names)
		}
	}
	if _, ok := names["stdout.3"]; ok {
		t.Errorf("more than --container_logger_max_files kept: %v", names)
	}
	logs, _ := mesolite(t, 30*time.Second, "logs", "--master="+c.masterAddr, "chatty-1")
	if !strings.Contains(logs, "line 399 of a chatty task") {
		t.Errorf("the newest output is not in stdout:\n%s", logs)
	}
}
