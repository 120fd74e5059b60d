package agent

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/isolation"
)

// EnvExecutorToken is the variable Mesos gives each executor its token in;
// the executor sends it back as "Authorization: Bearer <token>".
const EnvExecutorToken = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"

// executorTokens signs and checks executor tokens: JSON Web Tokens (HS256)
// whose claims name the framework, executor and container they speak for,
// as Mesos's agent issues them. The key lives in the agent's meta
// directory (0600), so tokens stay valid across agent restarts and the
// agent keeps no per-executor secret.
type executorTokens struct{ key []byte }

type tokenClaims struct {
	FrameworkID string `json:"fid"`
	ExecutorID  string `json:"eid"`
	ContainerID string `json:"cid"`
}

// loadExecutorTokens reads the signing key at path, creating it the first
// time.
func loadExecutorTokens(path string) (*executorTokens, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 32 {
		return &executorTokens{key: b}, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("executor token key: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("executor token key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("executor token key: %w", err)
	}
	if err := writeFileAtomicMode(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("executor token key: %w", err)
	}
	return &executorTokens{key: key}, nil
}

var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

func (t *executorTokens) sign(c tokenClaims) string {
	payload, _ := json.Marshal(c)
	msg := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	return msg + "." + base64.RawURLEncoding.EncodeToString(t.mac(msg))
}

func (t *executorTokens) mac(msg string) []byte {
	h := hmac.New(sha256.New, t.key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// verify checks the signature and returns the claims; the error wraps
// errdefs.ErrUnauthorized.
func (t *executorTokens) verify(token string) (tokenClaims, error) {
	var c tokenClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != jwtHeader {
		return c, fmt.Errorf("malformed executor token: %w", errdefs.ErrUnauthorized)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, t.mac(parts[0]+"."+parts[1])) {
		return c, fmt.Errorf("executor token signature does not verify: %w", errdefs.ErrUnauthorized)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(payload, &c) != nil {
		return c, fmt.Errorf("malformed executor token claims: %w", errdefs.ErrUnauthorized)
	}
	return c, nil
}

// bearerClaims verifies the request's Bearer token and returns its claims.
func (a *Agent) bearerClaims(r *http.Request) (tokenClaims, error) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return tokenClaims{}, fmt.Errorf("executor calls authenticate with a Bearer token: %w", errdefs.ErrUnauthorized)
	}
	return a.tokens.verify(strings.TrimSpace(token))
}

// errUnknownExecutor is the proved executor (its token verifies) that
// this agent does not know: a SUBSCRIBE is answered by SHUTDOWN, any other
// call is invalid.
var errUnknownExecutor = fmt.Errorf("unknown executor: %w", errdefs.ErrInvalid)

// connProof remembers, per TCP connection, the containers whose process
// was proved to hold it, so a keep-alive executor connection pays the
// /proc lookup once.
type connProof struct {
	mu     sync.Mutex
	proved map[string]bool
}

type connProofKey struct{}

// withConnProof is the server's ConnContext.
func withConnProof(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connProofKey{}, &connProof{})
}

// authorizeExecutorCall decides whether the caller may speak for the
// executor the call names. A Bearer token must name exactly that
// framework, executor and container. Without one (many executor libraries
// send none), the caller must be a process of the executor's container,
// proved from the connection's peer address, unless
// --authenticate_http_executors makes the token mandatory.
func (a *Agent) authorizeExecutorCall(r *http.Request, call *executor.Call) error {
	fwID, exID := call.GetFrameworkId().GetValue(), call.GetExecutorId().GetValue()
	a.mu.Lock()
	es := a.lookupExecutorLocked(fwID, exID)
	var cid string
	pid, ended := 0, false
	if es != nil {
		cid, ended = es.containerID, es.phase == phaseTerminated
		if es.handle != nil {
			pid = es.handle.Pid
		}
	}
	a.mu.Unlock()
	if es == nil {
		if r.Header.Get("Authorization") == "" {
			// The same answer as for a known executor: a caller without
			// a token learns nothing of which executors exist.
			return fmt.Errorf("a call without the executor's token must come from inside its container: %w", errdefs.ErrUnauthorized)
		}
		// A token this agent signed (its key outlives restarts) for this
		// very executor: one this agent launched and no longer knows, the
		// launch cut off by a crash before its container was checkpointed.
		if c, err := a.bearerClaims(r); err == nil && c.FrameworkID == fwID && c.ExecutorID == exID {
			return fmt.Errorf("executor %s of framework %s is not known to this agent: %w", exID, fwID, errUnknownExecutor)
		}
		return fmt.Errorf("executor %s of framework %s is not known to this agent: %w", exID, fwID, errdefs.ErrInvalid)
	}
	if r.Header.Get("Authorization") != "" {
		c, err := a.bearerClaims(r)
		if err != nil {
			return err
		}
		if c.FrameworkID != fwID || c.ExecutorID != exID || c.ContainerID != cid {
			return fmt.Errorf("the token speaks for executor %s of framework %s, not for executor %s of framework %s: %w",
				c.ExecutorID, c.FrameworkID, exID, fwID, errdefs.ErrForbidden)
		}
		return nil
	}
	if a.cfg.AuthenticateHTTPExecutors {
		return fmt.Errorf("executor calls need the executor's token (--authenticate_http_executors): %w", errdefs.ErrUnauthorized)
	}
	proof, _ := r.Context().Value(connProofKey{}).(*connProof)
	if proof != nil {
		proof.mu.Lock()
		ok := proof.proved[cid]
		proof.mu.Unlock()
		if ok {
			return nil
		}
	}
	if ended {
		// Its pid may belong to someone else by now.
		return fmt.Errorf("a call without the executor's token must come from inside its container: %w", errdefs.ErrUnauthorized)
	}
	if pid == 0 {
		return fmt.Errorf("executor %s is still launching; retry: %w", exID, errdefs.ErrUnavailable)
	}
	peer, ok1 := isolation.AddrPortOf(addrOf(r.RemoteAddr))
	localAddr, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	local, ok2 := isolation.AddrPortOf(localAddr)
	if !ok1 || !ok2 {
		return fmt.Errorf("a call without a token must come over TCP from the executor's container: %w", errdefs.ErrUnauthorized)
	}
	if _, err := isolation.SocketOwnerIn(pid, peer, local); err != nil {
		a.log.Warn("refused an executor call from outside the executor's container", "framework_id", fwID, "executor_id", exID,
			"container_id", cid, "remote", r.RemoteAddr, "error", err)
		return fmt.Errorf("a call without the executor's token must come from inside its container: %w", errdefs.ErrUnauthorized)
	}
	if proof != nil {
		proof.mu.Lock()
		if proof.proved == nil {
			proof.proved = map[string]bool{}
		}
		proof.proved[cid] = true
		proof.mu.Unlock()
	}
	return nil
}

func addrOf(hostport string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", hostport)
	if err != nil {
		return nil
	}
	return a
}
