package fetcher

import (
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"

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
	// srcGit is git:// or git::<url>, cloned by go-getter's git getter.
	srcGit
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
	case srcGit:
		return "git"
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

// forcedGetter is go-getter's `<getter>::<url>` syntax.
var forcedGetter = regexp.MustCompile(`^([A-Za-z0-9]+)::(.+)$`)

// gitTransports are the URL schemes a git source may use. Git's other
// transports (ext::, fd::) run commands or read descriptors, and go-getter
// v2 puts the URL on git's command line without a `--` before it.
var gitTransports = map[string]bool{"https": true, "http": true, "ssh": true, "git": true, "file": true}

// cloudForms are go-getter v1's cloud storage forms, which need the AWS and
// Google SDKs we no longer link: they fail with the way to fetch instead,
// rather than reaching the Hadoop client under a name it does not know.
var cloudForms = map[string]string{
	"s3":  "fetch s3://bucket/key or s3a://bucket/key through the Hadoop client (--hadoop_home), or give a presigned https:// URL",
	"gcs": "fetch gs://bucket/object through the Hadoop client (--hadoop_home) with the GCS connector, or give a signed https:// URL",
}

// parseSource classifies a URI value the way Mesos does (file:// and plain
// paths are local, http(s) goes to the network client, anything else,
// s3://, s3a:// and gs:// included, to the Hadoop client), with go-getter's
// git added.
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
		if how, ok := cloudForms[forced]; ok {
			// The value is not echoed: these forms carry access keys in
			// their query.
			return nil, fmt.Errorf("go-getter's %s:: form is no longer supported: %s: %w", forced, how, errdefs.ErrInvalid)
		}
		if forced != "git" {
			return nil, fmt.Errorf("forced getter %q is not supported (only git::): %w", forced, errdefs.ErrInvalid)
		}
		u, err := url.Parse(m[2])
		if err != nil {
			return nil, fmt.Errorf("parse URI %q: %v: %w", v, err, errdefs.ErrInvalid)
		}
		// go-getter matches the forced name case-sensitively.
		return gitSource("git::"+m[2], u)
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
		s.redacted = redactURL(u)
		return s, nil
	case scheme == "git":
		return gitSource(v, u)
	case scheme == "gcs":
		// Not a Hadoop filesystem: only go-getter v1 knew this name.
		return nil, fmt.Errorf("gcs:// URIs are not supported: %s: %w", cloudForms["gcs"], errdefs.ErrInvalid)
	case scheme == "ftp" || scheme == "ftps":
		return nil, fmt.Errorf("%s URIs are not supported; serve the artifact over http(s): %w", scheme, errdefs.ErrInvalid)
	default:
		// Mesos hands every other scheme (hdfs, s3, s3a, s3n, gs, hftp,
		// maprfs, ...) to the Hadoop client, which knows which filesystems
		// it has.
		sum, raw, err := splitChecksum(u)
		if err != nil {
			return nil, err
		}
		s := &source{kind: srcHadoop, raw: raw, url: u, sum: sum, name: path.Base(u.Path)}
		s.redacted = redactURL(u)
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

// gitSource is a git checkout: git://host/repo, or git::<url> with one of
// gitTransports. go-getter reads ref=, depth= and sshkey= from the query.
func gitSource(v string, u *url.URL) (*source, error) {
	if !gitTransports[strings.ToLower(u.Scheme)] {
		return nil, fmt.Errorf("git source must be a git://, https://, http://, ssh:// or file:// URL (git::https://host/org/repo.git), not scheme %q: %w", u.Scheme, errdefs.ErrInvalid)
	}
	q := u.Query()
	if q.Has("checksum") {
		return nil, fmt.Errorf("checksum cannot be verified for a git checkout: %w", errdefs.ErrInvalid)
	}
	// go-getter runs `git checkout <ref>` without `--`: a ref that looks
	// like an option would be read as one.
	if strings.HasPrefix(q.Get("ref"), "-") {
		return nil, fmt.Errorf("git ref %q starts with '-': %w", q.Get("ref"), errdefs.ErrInvalid)
	}
	s := &source{kind: srcGit, raw: v, url: u, dir: true, redacted: redactURL(u)}
	s.name = strings.TrimSuffix(path.Base(u.Path), ".git")
	if !strings.HasPrefix(s.redacted, "git") {
		s.redacted = "git::" + s.redacted
	}
	return s, nil
}

// redactedParams are query parameters whose values are credentials: the
// ones go-getter v1 hid (sshkey, its s3 access keys) and the signatures
// and tokens that make a presigned S3, GCS or Azure URL a bearer
// credential until it expires.
var redactedParams = map[string]bool{
	"sshkey":                true,
	"aws_access_key_id":     true,
	"aws_access_key_secret": true,
	"aws_access_token":      true,
	"x-amz-credential":      true,
	"x-amz-signature":       true,
	"x-amz-security-token":  true,
	"x-goog-credential":     true,
	"x-goog-signature":      true,
	"signature":             true,
	"sig":                   true,
}

// redactURL is u as a string with its password and credential parameters
// replaced by "redacted". A URL without them is returned as u.String(), so
// that its query is shown exactly as it is sent.
func redactURL(u *url.URL) string {
	ru := *u
	if _, has := ru.User.Password(); has {
		ru.User = url.UserPassword(ru.User.Username(), "redacted")
	}
	if ru.RawQuery != "" {
		parts := strings.Split(ru.RawQuery, "&")
		for i, part := range parts {
			k, _, _ := strings.Cut(part, "=")
			if key, err := url.QueryUnescape(k); err == nil && redactedParams[strings.ToLower(key)] {
				parts[i] = k + "=redacted"
			}
		}
		ru.RawQuery = strings.Join(parts, "&")
	}
	return ru.String()
}

// scrubSecrets replaces in msg what redactURL hides in u: its password and
// the values of credential parameters, in raw and decoded form.
func scrubSecrets(msg string, u *url.URL) string {
	var secrets []string
	if pw, has := u.User.Password(); has {
		secrets = append(secrets, pw, url.QueryEscape(pw))
	}
	for k, vals := range u.Query() {
		if redactedParams[strings.ToLower(k)] {
			for _, v := range vals {
				secrets = append(secrets, v, url.QueryEscape(v))
			}
		}
	}
	for _, s := range secrets {
		// A very short secret would also match unrelated text.
		if len(s) >= 4 {
			msg = strings.ReplaceAll(msg, s, "redacted")
		}
	}
	return msg
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
