package docker

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/registry"
)

// dockerConfigFile is the part of a docker config.json (or an old
// .dockercfg, which is the "auths" map alone) that pulls need.
type dockerConfigFile struct {
	Auths map[string]registry.AuthConfig `json:"auths"`
}

func parseDockerConfig(b []byte) (map[string]registry.AuthConfig, error) {
	var cf dockerConfigFile
	if err := json.Unmarshal(b, &cf); err != nil {
		return nil, err
	}
	if cf.Auths != nil {
		return cf.Auths, nil
	}
	var legacy map[string]registry.AuthConfig
	if err := json.Unmarshal(b, &legacy); err != nil {
		return nil, err
	}
	return legacy, nil
}

// registryAuth finds credentials for image's registry, as Mesos does: a
// config the task fetched into its sandbox (.docker/config.json or
// .dockercfg, the docker CLI's HOME files) wins over the agent's
// --docker_config. It returns "" when there are none.
func registryAuth(image, sandbox, agentConfig string) (string, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", invalidf("image %q: %v", image, err)
	}
	domain := reference.Domain(named)
	var sources [][]byte
	for _, p := range []string{filepath.Join(".docker", "config.json"), ".dockercfg"} {
		b, err := readSandboxConfig(sandbox, p)
		if err != nil {
			return "", err
		}
		if b != nil {
			sources = append(sources, b)
		}
	}
	if agentConfig != "" {
		b := []byte(agentConfig)
		if !strings.HasPrefix(strings.TrimSpace(agentConfig), "{") {
			b, err = os.ReadFile(agentConfig)
			if err != nil {
				return "", fmt.Errorf("read --docker_config: %w", err)
			}
		}
		sources = append(sources, b)
	}
	for _, b := range sources {
		auths, err := parseDockerConfig(b)
		if err != nil {
			return "", fmt.Errorf("parse docker config: %w", err)
		}
		for key, ac := range auths {
			if registryHost(key) != domain {
				continue
			}
			if ac.Username == "" && ac.Auth != "" {
				raw, err := base64.StdEncoding.DecodeString(ac.Auth)
				if err != nil {
					return "", fmt.Errorf("docker config auth for %s: %w", key, err)
				}
				ac.Username, ac.Password, _ = strings.Cut(string(raw), ":")
				ac.Auth = ""
			}
			ac.ServerAddress = key
			return registry.EncodeAuthConfig(ac)
		}
	}
	return "", nil
}

// registryHost normalises a config.json key ("https://index.docker.io/v1/",
// "registry.example.com:5000") to a reference domain.
func registryHost(key string) string {
	key = strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	key, _, _ = strings.Cut(key, "/")
	switch key {
	case "index.docker.io", "registry-1.docker.io", "docker.io":
		return "docker.io"
	}
	return key
}

// maxDockerConfig caps a docker config read from a sandbox.
const maxDockerConfig = 1 << 20

// readSandboxConfig reads name below sandbox, which the task's fetch
// wrote: the agent reads it as root, so it follows no link out of the
// sandbox (os.Root), opens nothing but a regular file (a FIFO would hang
// the launch: opened non-blocking, then checked) and reads at most
// maxDockerConfig. It returns nil, nil when there is no such file.
func readSandboxConfig(sandbox, name string) ([]byte, error) {
	if sandbox == "" {
		return nil, nil
	}
	root, err := os.OpenRoot(sandbox)
	if err != nil {
		return nil, nil // no sandbox, no config in it
	}
	defer root.Close()
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, invalidf("docker config %s in the sandbox: %v", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, invalidf("docker config %s in the sandbox is not a regular file", name)
	}
	if st.Size() > maxDockerConfig {
		return nil, invalidf("docker config %s in the sandbox is over %d bytes", name, maxDockerConfig)
	}
	return io.ReadAll(io.LimitReader(f, maxDockerConfig))
}
