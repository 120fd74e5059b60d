//go:build !linux

package sandbox

import "errors"

func diskUsage(path string) (float64, error) {
	return 0, errors.New("disk usage is only measured on Linux")
}

func mountPoints() ([]string, error) { return nil, nil }

func unmount(m string) error { return errors.New("unmount is Linux only") }
