package detector

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// MasterInfo describes a master: enough to reach it and to name it.
type MasterInfo struct {
	ID       string
	IP       string // dotted address, may be empty when only the hostname is known
	Port     int
	Hostname string
	PID      string // libprocess style, master@ip:port
	Version  string
	// Scheme is "https" when a --master value said https://; empty
	// otherwise. Masters found in ZooKeeper never carry one (Mesos's
	// MasterInfo has no scheme): a client configured for TLS speaks https
	// to them.
	Scheme string
}

// IsZero reports whether m names no master (no leader is known).
func (m MasterInfo) IsZero() bool { return m.IP == "" && m.Hostname == "" && m.Port == 0 }

// Addr is where to connect: ip:port, or hostname:port when the ip is unknown.
func (m MasterInfo) Addr() string {
	host := m.IP
	if host == "" {
		host = m.Hostname
	}
	return net.JoinHostPort(host, strconv.Itoa(m.Port))
}

// HostPort is the name to show and redirect to, as Mesos's redirects do:
// hostname:port, or ip:port without a hostname.
func (m MasterInfo) HostPort() string {
	host := m.Hostname
	if host == "" {
		host = m.IP
	}
	return net.JoinHostPort(host, strconv.Itoa(m.Port))
}

// Detector tells who leads.
type Detector interface {
	// Leader returns the leading master, waiting until one is known or ctx
	// ends.
	Leader(ctx context.Context) (MasterInfo, error)
	// Watch sends the current leader at once and then every change (a zero
	// MasterInfo while none leads). A slow reader only misses intermediate
	// values, never the latest. The channel closes when ctx ends or the
	// detector is closed.
	Watch(ctx context.Context) <-chan MasterInfo
	// Close releases the detector (its ZooKeeper session).
	Close() error
}

// Option configures New and Contend.
type Option func(*options)

type options struct {
	log            *slog.Logger
	sessionTimeout time.Duration
}

// WithLogger logs to l (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithSessionTimeout sets the ZooKeeper session timeout (default 10s, as
// Mesos's --zk_session_timeout).
func WithSessionTimeout(d time.Duration) Option { return func(o *options) { o.sessionTimeout = d } }

func buildOptions(opts []Option) options {
	o := options{sessionTimeout: 10 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	o.log = o.log.With("component", "detector")
	return o
}

// New returns a detector for a --master value: host:port, zk://... or
// file:///path. Errors wrap errdefs.ErrInvalid.
func New(master string, opts ...Option) (Detector, error) {
	o := buildOptions(opts)
	master = strings.TrimSpace(master)
	if path, ok := strings.CutPrefix(master, "file://"); ok {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--master=%s: %w: %w", master, errdefs.ErrInvalid, err)
		}
		master = strings.TrimSpace(string(data))
		if strings.HasPrefix(master, "file://") {
			return nil, fmt.Errorf("--master file %s points to another file: %w", path, errdefs.ErrInvalid)
		}
	}
	if strings.HasPrefix(master, "zk://") {
		u, err := ParseZK(master)
		if err != nil {
			return nil, err
		}
		return newZKDetector(u, o)
	}
	info, err := ParseHostPort(master)
	if err != nil {
		return nil, err
	}
	return &standalone{info: info, closed: make(chan struct{})}, nil
}

// ParseHostPort reads host:port, master@host:port, http://host:port or
// https://host:port.
func ParseHostPort(s string) (MasterInfo, error) {
	s, https := strings.CutPrefix(strings.TrimPrefix(s, "http://"), "https://")
	s = strings.TrimSuffix(strings.TrimPrefix(s, "master@"), "/")
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return MasterInfo{}, fmt.Errorf("--master=%q: want host:port, zk://host:2181/path or file:///path: %w", s, errdefs.ErrInvalid)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return MasterInfo{}, fmt.Errorf("--master=%q: bad port: %w", s, errdefs.ErrInvalid)
	}
	m := MasterInfo{Hostname: host, Port: p}
	if addr, err := netip.ParseAddr(host); err == nil {
		m.IP = addr.String()
	}
	m.PID = "master@" + net.JoinHostPort(host, port)
	if https {
		m.Scheme = "https"
	}
	return m, nil
}

// standalone is a fixed master.
type standalone struct {
	info      MasterInfo
	closeOnce sync.Once
	closed    chan struct{}
}

func (s *standalone) Leader(ctx context.Context) (MasterInfo, error) {
	if err := ctx.Err(); err != nil {
		return MasterInfo{}, err
	}
	return s.info, nil
}

func (s *standalone) Watch(ctx context.Context) <-chan MasterInfo {
	ch := make(chan MasterInfo, 1)
	ch <- s.info
	go func() {
		select {
		case <-ctx.Done():
		case <-s.closed:
		}
		close(ch)
	}()
	return ch
}

func (s *standalone) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

// jsonMasterInfo is Mesos's JSON rendering of the MasterInfo protobuf, as
// masters write it into their `json.info_` znodes.
type jsonMasterInfo struct {
	ID       string       `json:"id"`
	IP       uint32       `json:"ip"`
	Port     int          `json:"port"`
	PID      string       `json:"pid,omitempty"`
	Hostname string       `json:"hostname,omitempty"`
	Version  string       `json:"version,omitempty"`
	Address  *jsonAddress `json:"address,omitempty"`
}

type jsonAddress struct {
	Hostname string `json:"hostname,omitempty"`
	IP       string `json:"ip,omitempty"`
	Port     int    `json:"port"`
}

// IPToUint32 encodes an IPv4 address as MasterInfo.ip: the in_addr's bytes
// in network order read as a little-endian integer, which is what Mesos
// stores (127.0.0.1 is 16777343). Other addresses give 0.
func IPToUint32(ip string) uint32 {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Unmap().Is4() {
		return 0
	}
	b := a.Unmap().As4()
	return binary.LittleEndian.Uint32(b[:])
}

// Uint32ToIP decodes MasterInfo.ip.
func Uint32ToIP(v uint32) string {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b).String()
}

// MarshalJSON writes m in Mesos's znode format.
func (m MasterInfo) MarshalJSON() ([]byte, error) {
	j := jsonMasterInfo{
		ID: m.ID, IP: IPToUint32(m.IP), Port: m.Port, PID: m.PID, Hostname: m.Hostname, Version: m.Version,
		Address: &jsonAddress{Hostname: m.Hostname, IP: m.IP, Port: m.Port},
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads Mesos's znode format.
func (m *MasterInfo) UnmarshalJSON(data []byte) error {
	var j jsonMasterInfo
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*m = MasterInfo{ID: j.ID, Port: j.Port, PID: j.PID, Hostname: j.Hostname, Version: j.Version}
	if j.IP != 0 {
		m.IP = Uint32ToIP(j.IP)
	}
	if a := j.Address; a != nil {
		if a.IP != "" {
			m.IP = a.IP
		}
		if a.Hostname != "" && m.Hostname == "" {
			m.Hostname = a.Hostname
		}
		if a.Port != 0 {
			m.Port = a.Port
		}
	}
	if m.Port == 0 {
		return fmt.Errorf("master info without a port: %w", errdefs.ErrInvalid)
	}
	return nil
}
