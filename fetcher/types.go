package fetcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// Defaults for the Config fields whose zero value means "use the default".
const (
	// DefaultCacheSize is Mesos's default --fetcher_cache_size (2GB).
	DefaultCacheSize int64 = 2 << 30
	// DefaultStallTimeout is Mesos's default --fetcher_stall_timeout (60secs).
	DefaultStallTimeout = 60 * time.Second
	// DefaultMaxExtractBytes bounds what one archive may decompress to.
	DefaultMaxExtractBytes int64 = 16 << 30
	// DefaultMaxExtractEntries bounds the number of entries one archive may hold.
	DefaultMaxExtractEntries = 200_000
	// DefaultMaxSize is --fetcher_max_size: what one fetch request may write
	// into a sandbox when the task declares no smaller disk.
	DefaultMaxSize int64 = 10 << 30
	// DefaultStallMinRate is the slowest a download may be over a whole
	// stall window before it counts as stalled. A trickle that sends a
	// byte now and then is as dead as one that sends nothing, and would
	// otherwise hold a slot and a sandbox until the whole-fetch timeout.
	DefaultStallMinRate int64 = 1024
)

// Request is one fetch: every URI of a task's CommandInfo, fetched in order
// into SandboxDir. User is the task user (CommandInfo.user or the framework
// user); it selects the cache directory and, when the agent runs as root,
// the identity the child process fetches as.
//
// MaxBytes is the task's disk resource in bytes (0: none declared). The
// whole request, downloads and extracted archives together, may write no
// more than the smaller of MaxBytes and Config.MaxSize into the sandbox.
type Request struct {
	SandboxDir string `json:"sandbox_dir"`
	User       string `json:"user,omitempty"`
	URIs       []URI  `json:"uris"`
	MaxBytes   int64  `json:"max_bytes,omitempty"`
	// Progress, when set, is told about once a second how far a download
	// is (RunChild; the same lines go to the sandbox's stderr).
	Progress func(Progress) `json:"-"`
}

// URI mirrors Mesos's CommandInfo.URI.
//
//   - Value: http(s)://, file://, a plain absolute path, a relative path
//     (under Config.FrameworksHome), git://... or git::<url> (a checkout
//     through go-getter) or any other scheme handed to the Hadoop client
//     (hdfs://, s3://, s3a://, gs://, ...). go-getter's s3:: and gcs::
//     forms are refused with the way to fetch instead.
//     A `checksum=<type>:<hex>` query parameter is verified and not sent.
//   - Executable: the file gets mode 0755 and is never extracted.
//   - Extract: archives are unpacked into the sandbox root. Mesos defaults
//     it to true; callers converting from the proto use GetExtract(), and
//     JSON without the key decodes as true. NewURI also defaults it.
//   - Cache: go through the fetcher cache.
//   - OutputFile: the name in the sandbox, relative, may contain a
//     subfolder; absolute or escaping names are refused.
type URI struct {
	Value      string `json:"value"`
	Executable bool   `json:"executable,omitempty"`
	Extract    bool   `json:"extract"`
	Cache      bool   `json:"cache,omitempty"`
	OutputFile string `json:"output_file,omitempty"`
}

// NewURI returns a URI with Mesos's defaults (extract on, cache off).
func NewURI(value string) URI { return URI{Value: value, Extract: true} }

// UnmarshalJSON applies Mesos's default of extract=true when the key is absent.
func (u *URI) UnmarshalJSON(b []byte) error {
	type plain URI
	p := plain{Extract: true}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*u = URI(p)
	return nil
}

// Config carries the agent flags that shape fetching. It travels to the
// child process inside the request, so the child needs no flags of its own.
type Config struct {
	// FrameworksHome is --frameworks_home: relative URIs resolve under it.
	FrameworksHome string `json:"frameworks_home,omitempty"`
	// HadoopHome is --hadoop_home; when empty, $HADOOP_HOME, then `hadoop` on PATH.
	HadoopHome string `json:"hadoop_home,omitempty"`
	// CacheDir is --fetcher_cache_dir. Empty disables the cache.
	CacheDir string `json:"cache_dir,omitempty"`
	// CacheSize is --fetcher_cache_size in bytes; 0 disables the cache. The
	// budget applies to each user's cache directory.
	CacheSize int64 `json:"cache_size,omitempty"`
	// StallTimeout is --fetcher_stall_timeout: a download that receives
	// less than StallMinRate bytes per second over this long fails. 0 means
	// DefaultStallTimeout, negative disables.
	StallTimeout time.Duration `json:"stall_timeout,omitempty"`
	// StallMinRate is the least bytes per second a download must average
	// over each StallTimeout window; 0 means DefaultStallMinRate.
	StallMinRate int64 `json:"stall_min_rate,omitempty"`
	// MaxSize is --fetcher_max_size: what one request may write into a
	// sandbox, downloads and extracted bytes together, whatever the task
	// declares. 0 means DefaultMaxSize, negative means no cap of its own
	// (the task's disk, when given, still bounds the fetch).
	MaxSize int64 `json:"max_size,omitempty"`
	// URITimeout bounds one URI's download; 0 means no bound beyond the
	// whole fetch's deadline.
	URITimeout time.Duration `json:"uri_timeout,omitempty"`
	// MaxDownloadBytes bounds one download; 0 means unlimited.
	MaxDownloadBytes int64 `json:"max_download_bytes,omitempty"`
	// MaxExtractBytes bounds the bytes one archive decompresses to; 0 means
	// DefaultMaxExtractBytes.
	MaxExtractBytes int64 `json:"max_extract_bytes,omitempty"`
	// MaxExtractEntries bounds the entries of one archive; 0 means
	// DefaultMaxExtractEntries.
	MaxExtractEntries int `json:"max_extract_entries,omitempty"`
	// CAFile is a PEM bundle https downloads trust besides the system's
	// roots: the agent's --ssl_ca_file, for the cluster's TLS artifact
	// servers. It must be readable by the task users fetches run as.
	CAFile string `json:"ca_file,omitempty"`
}

func (c Config) stallTimeout() time.Duration {
	switch {
	case c.StallTimeout == 0:
		return DefaultStallTimeout
	case c.StallTimeout < 0:
		return 0
	}
	return c.StallTimeout
}

func (c Config) extractLimits() extractLimits {
	l := extractLimits{maxBytes: c.MaxExtractBytes, maxEntries: c.MaxExtractEntries}
	if l.maxBytes <= 0 {
		l.maxBytes = DefaultMaxExtractBytes
	}
	if l.maxEntries <= 0 {
		l.maxEntries = DefaultMaxExtractEntries
	}
	return l
}

func (c Config) stallMinRate() int64 {
	if c.StallMinRate <= 0 {
		return DefaultStallMinRate
	}
	return c.StallMinRate
}

func (c Config) cacheEnabled() bool { return c.CacheDir != "" && c.CacheSize > 0 }

// Result describes one fetched URI.
type Result struct {
	// URI is the value with any password redacted.
	URI string `json:"uri"`
	// Path is where the file landed, relative to the sandbox ("" when the
	// archive was extracted from the cache and not copied, as in Mesos).
	Path string `json:"path,omitempty"`
	// Bytes is the size of the fetched file.
	Bytes int64 `json:"bytes"`
	// CacheHit is true when the bytes came from the fetcher cache.
	CacheHit bool `json:"cache_hit,omitempty"`
	// Extracted counts the archive entries unpacked into the sandbox.
	Extracted int `json:"extracted,omitempty"`
}

// URIError is the error RunChild and Fetch return: it names the URI that
// failed and wraps the cause, whose errdefs class survives errors.Is even
// across the process boundary.
type URIError struct {
	URI string
	Err error
}

func (e *URIError) Error() string { return fmt.Sprintf("failed to fetch '%s': %v", e.URI, e.Err) }

func (e *URIError) Unwrap() error { return e.Err }

// classNames names the errdefs classes for the trip from child to parent.
var classNames = []struct {
	name string
	err  error
}{
	{"invalid", errdefs.ErrInvalid},
	{"not_found", errdefs.ErrNotFound},
	{"forbidden", errdefs.ErrForbidden},
	{"unauthorized", errdefs.ErrUnauthorized},
	{"conflict", errdefs.ErrConflict},
	{"unavailable", errdefs.ErrUnavailable},
	{"gone", errdefs.ErrGone},
}

func className(err error) string {
	for _, c := range classNames {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return ""
}

// classError carries a message from the child together with its class.
type classError struct {
	msg   string
	class error
}

func (e *classError) Error() string { return e.msg }
func (e *classError) Unwrap() error { return e.class }

func errorFromClass(msg, class string) error {
	for _, c := range classNames {
		if c.name == class {
			return &classError{msg: msg, class: c.err}
		}
	}
	return errors.New(msg)
}
