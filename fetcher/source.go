package fetcher

import (
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	getter "github.com/hashicorp/go-getter"

	"github.com/mesolite/mesolite/errdefs"
)

type sourceKind int

const (
	// srcLocalRel is a relative path, resolved under --frameworks_home.
	srcLocalRel sourceKind = iota
	// srcLocalAbs is an absolute path or a file:// URI.
	srcLocalAbs
	// srcHTTP is http:// or https://.
	srcHTTP
	// srcGetter is s3, gcs or git, downloaded by a restricted go-getter client.
	srcGetter
	// srcHadoop is any other scheme, handed to `hadoop fs -copyToLocal` as Mesos does.
	srcHadoop
)

func (k sourceKind) String() string {
	switch k {
	case srcLocalRel:
		return "frameworks_home"
	case srcLocalAbs:
		return "local"
	case srcHTTP:
		return "http"
	case srcGetter:
		return "go-getter"
	case srcHadoop:
		return "hadoop"
	}
	return "unknown"
}

// source is a parsed URI value.
type source struct {
	kind sourceKind
	// raw is what the downloader is given: the value without `checksum=`.
	raw string
	// redacted is raw with any password hidden, for logs and errors.
	redacted string
	// url is set for every kind but the local ones.
	url *url.URL
	// path is the local path for srcLocalRel and srcLocalAbs.
	path string
	// name is the default file name in the sandbox.
	name string
	// sum is the checksum to verify, when the URI carries one.
	sum *checksum
	// dir is true when the download is a directory (git).
	dir bool
}

var forcedGetter = regexp.MustCompile(`^([A-Za-z0-9]+)::(.+)$`)

// getterSchemes are the go-getter protocols we enable besides http and file.
var getterSchemes = map[string]bool{"s3": true, "gcs": true, "git": true}

// parseSource classifies a URI value the way Mesos does (file:// and plain
// paths are local, http(s) goes to the network client, anything else to the
// Hadoop client), with go-getter's s3/gcs/git added.
func parseSource(value string, frameworksHome string) (*source, error) {
	v := strings.TrimLeft(value, " \t\r\n")
	if v == "" {
		return nil, fmt.Errorf("empty URI: %w", errdefs.ErrInvalid)
	}
	// Mesos refuses these: they break the shell-era fetcher and are never
	// needed in a real URI.
	if strings.ContainsAny(v, "\\'\x00") {
		return nil, fmt.Errorf("illegal characters in URI %q: %w", v, errdefs.ErrInvalid)
	}

	if m := forcedGetter.FindStringSubmatch(v); m != nil {
		forced := strings.ToLower(m[1])
		if !getterSchemes[forced] {
			return nil, fmt.Errorf("forced getter %q is not supported (s3, gcs, git): %w", forced, errdefs.ErrInvalid)
		}
		u, err := url.Parse(m[2])
		if err != nil {
			return nil, fmt.Errorf("parse URI %q: %v: %w", v, err, errdefs.ErrInvalid)
		}
		return getterSource(v, u, forced)
	}

	if !strings.Contains(v, "://") {
		return localSource(v, frameworksHome)
	}

	u, err := url.Parse(v)
	if err != nil {
		return nil, fmt.Errorf("parse URI %q: %v: %w", v, err, errdefs.ErrInvalid)
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("file URI %q names host %q; only local files can be fetched: %w", v, u.Host, errdefs.ErrInvalid)
		}
		if !path.IsAbs(u.Path) {
			return nil, fmt.Errorf("file URI only supports absolute paths: %q: %w", v, errdefs.ErrInvalid)
		}
		sum, _, err := splitChecksum(u)
		if err != nil {
			return nil, err
		}
		return &source{kind: srcLocalAbs, raw: u.Path, redacted: u.Path, path: filepath.Clean(u.Path), name: path.Base(u.Path), sum: sum}, nil
	case scheme == "http" || scheme == "https":
		if u.Host == "" {
			return nil, fmt.Errorf("URI %q has no host: %w", v, errdefs.ErrInvalid)
		}
		sum, raw, err := splitChecksum(u)
		if err != nil {
			return nil, err
		}
		s := &source{kind: srcHTTP, raw: raw, url: u, sum: sum, name: path.Base(u.Path)}
		s.redacted = getter.RedactURL(u)
		return s, nil
	case getterSchemes[scheme]:
		return getterSource(v, u, scheme)
	case scheme == "ftp" || scheme == "ftps":
		return nil, fmt.Errorf("%s URIs are not supported; serve the artifact over http(s): %w", scheme, errdefs.ErrInvalid)
	default:
		// Mesos hands every other scheme (hdfs, s3n, s3a, hftp, maprfs, ...)
		// to the Hadoop client, which knows which filesystems it has.
		sum, raw, err := splitChecksum(u)
		if err != nil {
			return nil, err
		}
		s := &source{kind: srcHadoop, raw: raw, url: u, sum: sum, name: path.Base(u.Path)}
		s.redacted = getter.RedactURL(u)
		return s, nil
	}
}

func localSource(v, frameworksHome string) (*source, error) {
	s := &source{raw: v, redacted: v, name: path.Base(v)}
	if path.IsAbs(v) {
		s.kind = srcLocalAbs
		s.path = filepath.Clean(v)
		return s, nil
	}
	if frameworksHome == "" {
		return nil, fmt.Errorf("a relative path was passed for the resource but --frameworks_home is not set; set it or use an absolute path: %q: %w", v, errdefs.ErrInvalid)
	}
	s.kind = srcLocalRel
	// The path is resolved through an os.Root on frameworks_home at download
	// time; here we only keep it relative.
	s.path = v
	return s, nil
}

func getterSource(v string, u *url.URL, scheme string) (*source, error) {
	sum, _, err := splitChecksum(u)
	if err != nil {
		return nil, err
	}
	raw := v
	if sum != nil {
		// Rebuild the value without checksum= so go-getter does not verify
		// (and re-encode) it a second time.
		i := strings.Index(v, "?")
		raw = v[:i]
		if u.RawQuery != "" {
			raw += "?" + u.RawQuery
		}
	}
	s := &source{kind: srcGetter, raw: raw, url: u, sum: sum, redacted: getter.RedactURL(u)}
	s.name = path.Base(u.Path)
	if scheme == "git" {
		s.dir = true
		s.name = strings.TrimSuffix(s.name, ".git")
		if sum != nil {
			return nil, fmt.Errorf("checksum cannot be verified for a git checkout: %w", errdefs.ErrInvalid)
		}
	}
	if !strings.HasPrefix(s.redacted, scheme) {
		s.redacted = scheme + "::" + s.redacted
	}
	return s, nil
}

// splitChecksum removes `checksum=` from u's query without re-encoding the
// other parameters (signed URLs break when their query is reordered) and
// returns the parsed checksum and the URL string to request.
func splitChecksum(u *url.URL) (*checksum, string, error) {
	if u.RawQuery == "" {
		return nil, u.String(), nil
	}
	var kept []string
	var sum *checksum
	for _, part := range strings.Split(u.RawQuery, "&") {
		k, val, _ := strings.Cut(part, "=")
		if key, err := url.QueryUnescape(k); err == nil && key == "checksum" {
			raw, err := url.QueryUnescape(val)
			if err != nil {
				return nil, "", fmt.Errorf("checksum parameter: %v: %w", err, errdefs.ErrInvalid)
			}
			if sum, err = parseChecksum(raw); err != nil {
				return nil, "", err
			}
			continue
		}
		kept = append(kept, part)
	}
	cp := *u
	cp.RawQuery = strings.Join(kept, "&")
	*u = cp
	return sum, cp.String(), nil
}

// outputName is where a URI lands in the sandbox: output_file when given
// (relative, possibly with a subfolder), else the last path element of the
// URI without its query, which also makes `x.tgz?op=OPEN` land as x.tgz.
func outputName(u URI, s *source) (string, error) {
	if u.OutputFile != "" {
		if filepath.IsAbs(u.OutputFile) {
			return "", fmt.Errorf("output_file %q must be relative to the sandbox: %w", u.OutputFile, errdefs.ErrInvalid)
		}
		for _, part := range strings.Split(u.OutputFile, "/") {
			if part == ".." {
				return "", fmt.Errorf("output_file %q escapes the sandbox: %w", u.OutputFile, errdefs.ErrForbidden)
			}
		}
		name := filepath.Clean(u.OutputFile)
		if !filepath.IsLocal(name) || name == "." {
			return "", fmt.Errorf("output_file %q is not a file name inside the sandbox: %w", u.OutputFile, errdefs.ErrInvalid)
		}
		return name, nil
	}
	name := s.name
	if name == "" || name == "." || name == "/" || name == ".." {
		return "", fmt.Errorf("cannot derive a file name from %q (no path); set output_file: %w", s.redacted, errdefs.ErrInvalid)
	}
	return name, nil
}
