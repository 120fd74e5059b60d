package isolation

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// childPids lists the children of pid. /proc/<pid>/task/<tid>/children
// names those of each thread (a child belongs to the thread that forked
// it); without CONFIG_PROC_CHILDREN it scans every process's parent.
func childPids(pid int) ([]int, error) {
	taskDir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(taskDir)
	if err != nil {
		return nil, fmt.Errorf("list threads of %d: %w", pid, err)
	}
	var kids []int
	for _, t := range tasks {
		b, err := os.ReadFile(taskDir + "/" + t.Name() + "/children")
		if errors.Is(err, fs.ErrNotExist) {
			if _, statErr := os.Stat(taskDir + "/" + t.Name()); statErr == nil {
				return childPidsByScan(pid)
			}
			continue // the thread exited
		}
		if err != nil {
			return nil, fmt.Errorf("children of %d: %w", pid, err)
		}
		for _, f := range strings.Fields(string(b)) {
			if k, err := strconv.Atoi(f); err == nil {
				kids = append(kids, k)
			}
		}
	}
	return kids, nil
}

func childPidsByScan(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, err := parentPid(p); err == nil && ppid == pid {
			kids = append(kids, p)
		}
	}
	return kids, nil
}

// parentPid reads the ppid field of /proc/<pid>/stat, which follows the
// command name in parentheses and the state.
func parentPid(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat of %d", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("malformed stat of %d", pid)
	}
	return strconv.Atoi(f[1])
}
