package scheduler

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/user"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/tlsconfig"
	"google.golang.org/protobuf/proto"
)

// Defaults for the zero values of Config.
const (
	DefaultMissedHeartbeats = 5
	DefaultBackoffMin       = 500 * time.Millisecond
	// DefaultBackoffMax is what the Mesos scheduler API docs recommend.
	DefaultBackoffMax  = 15 * time.Second
	DefaultCallTimeout = 30 * time.Second
	// DefaultHeartbeatInterval applies when SUBSCRIBED does not say.
	DefaultHeartbeatInterval = 15 * time.Second
)

// Config describes a subscription. Master and Framework are required; the
// rest have defaults.
type Config struct {
	// Master is where to find the leading master: host:port (port 5050 if
	// left out), http://host:port, https://host:port, zk://host:2181/path,
	// or file:///path naming a file that holds one of those.
	Master string
	// Framework is sent in SUBSCRIBE. Name is required; User defaults to
	// the current user. Set Id to fail over to an existing framework. The
	// client keeps its own copy and fills in the id the master assigns.
	Framework *mesos.FrameworkInfo
	// Codec is the encoding of calls and events: codec.JSON (default) or
	// codec.Protobuf.
	Codec codec.Codec
	// HTTPClient sends every request. It must not set a Timeout, which
	// would cut the event stream; calls are bounded by CallTimeout instead.
	// Its redirect policy is ignored: the client follows 307s itself,
	// because a master's `Location: //host:port` drops the request path.
	HTTPClient *http.Client
	// TLS, when set, makes the client speak https to the master, verifying
	// it with this configuration (its RootCAs, or the system's roots when
	// nil); the default HTTPClient uses it, a caller's own must carry its
	// TLS settings itself. A Master of https://host:port speaks https with
	// the system's roots when TLS is nil. Masters found in ZooKeeper carry
	// no scheme, so a client of a TLS cluster behind zk:// sets TLS.
	TLS *tls.Config
	// Principal and Secret authenticate every request with HTTP Basic, for
	// a master started with --authenticate_frameworks (or
	// --authenticate_http_frameworks). Principal is also the framework's
	// FrameworkInfo.principal when that is unset, which the master
	// requires to match; a framework id belongs to its principal, so a
	// failover must use the same one. Empty: no credentials.
	Principal, Secret string
	// Logger receives connection and re-subscription messages; the default
	// discards them.
	Logger *slog.Logger
	// ManualAcknowledge turns off automatic acknowledgement of status
	// updates; the caller then calls Acknowledge for every update with a
	// uuid, after it has acted on it.
	ManualAcknowledge bool
	// MissedHeartbeats is how many heartbeat intervals may pass without any
	// event before the stream counts as dead (DefaultMissedHeartbeats).
	MissedHeartbeats int
	// BackoffMin and BackoffMax bound the jittered exponential wait between
	// re-subscription attempts.
	BackoffMin, BackoffMax time.Duration
	// CallTimeout bounds a call whose context has no deadline.
	CallTimeout time.Duration
	// ReconnectTimeout is how long the client keeps trying to re-subscribe
	// after it lost the master before giving up; 0 means until the context
	// is done.
	ReconnectTimeout time.Duration
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Master == "" {
		return cfg, fmt.Errorf("scheduler: Config.Master is empty: %w", errdefs.ErrInvalid)
	}
	if cfg.Framework == nil || cfg.Framework.GetName() == "" {
		return cfg, fmt.Errorf("scheduler: Config.Framework needs a name: %w", errdefs.ErrInvalid)
	}
	cfg.Framework = proto.Clone(cfg.Framework).(*mesos.FrameworkInfo)
	if cfg.Framework.GetUser() == "" {
		cfg.Framework.User = mesos.Ptr(currentUser())
	}
	switch {
	case cfg.Principal != "" && cfg.Framework.Principal == nil:
		cfg.Framework.Principal = mesos.Ptr(cfg.Principal)
	case cfg.Principal == "" && cfg.Secret != "":
		cfg.Principal = cfg.Framework.GetPrincipal()
		if cfg.Principal == "" {
			return cfg, fmt.Errorf("scheduler: Config.Secret without a principal: %w", errdefs.ErrInvalid)
		}
	}
	if cfg.Codec == nil {
		cfg.Codec = codec.JSON
	}
	if cfg.HTTPClient == nil {
		t := defaultTransport()
		t.TLSClientConfig = cfg.TLS
		cfg.HTTPClient = &http.Client{Transport: tlsconfig.ExplainErrors(t)}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MissedHeartbeats <= 0 {
		cfg.MissedHeartbeats = DefaultMissedHeartbeats
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(DefaultBackoffMax, cfg.BackoffMin)
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	return cfg, nil
}

// authorize adds the credentials, if any, to a request to the master.
func (cfg *Config) authorize(req *http.Request) {
	if cfg.Secret != "" {
		req.SetBasicAuth(cfg.Principal, cfg.Secret)
	}
}

// defaultTransport bounds connecting and waiting for answer headers, which a
// dead master would otherwise stretch to the kernel's TCP timeouts, but not
// the body: the event stream lasts as long as the subscription.
func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.ResponseHeaderTimeout = 30 * time.Second
	return t
}

// currentUser is the Unix user tasks run as when the framework does not say;
// Mesos's own scheduler driver makes the same choice.
func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "root"
}

// RefuseFor returns Filters asking the master not to offer the declined
// resources again for d.
func RefuseFor(d time.Duration) *mesos.Filters {
	return &mesos.Filters{RefuseSeconds: mesos.Ptr(d.Seconds())}
}
