package master

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/mesolite/mesolite/api/v1/codec"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/acls"
	"google.golang.org/protobuf/proto"
)

// The master's log at /master/log: READ_FILE and LIST_FILES of the
// operator API and /files/read serve it; --acls' access_mesos_logs says
// who may read it.
func TestMasterLogInTheFilesAPI(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "mesolite-master.log")
	if err := os.WriteFile(logFile, []byte("level=INFO msg=\"master listening\"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	rules, err := acls.Parse(`{"access_mesos_logs": [{"principals": {"values": ["ops"]}, "logs": {"type": "ANY"}},
	                                                 {"principals": {"type": "ANY"}, "logs": {"type": "NONE"}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := httpauth.New(httpauth.Options{Enabled: true, Realm: "mesos", Credentials: []httpauth.Credential{
		{Principal: "ops", Secret: "ops-secret"}, {Principal: "dev", Secret: "dev-secret"}}})
	if err != nil {
		t.Fatal(err)
	}
	h := startMaster(t, func(cfg *Config) { cfg.LogFile = logFile; cfg.ACLs = rules; cfg.ReadOnlyAuth = ro.Wrap })
	ops, dev := basicAuth("ops", "ops-secret"), basicAuth("dev", "dev-secret")

	read := &masterpb.Call{Type: masterpb.Call_READ_FILE.Enum(), ReadFile: &masterpb.Call_ReadFile{Path: proto.String("/master/log"), Offset: proto.Uint64(0)}}
	resp := opCallWith(t, h.base, read, ops)
	if string(resp.GetReadFile().GetData()) != "level=INFO msg=\"master listening\"\n" || resp.GetReadFile().GetSize() == 0 {
		t.Errorf("READ_FILE /master/log: %v", resp)
	}
	if code, body, _ := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, read, dev); code != http.StatusForbidden {
		t.Errorf("READ_FILE by a principal access_mesos_logs refuses: %d %s, want 403", code, body)
	}
	other := &masterpb.Call{Type: masterpb.Call_READ_FILE.Enum(), ReadFile: &masterpb.Call_ReadFile{Path: proto.String("/etc/passwd"), Offset: proto.Uint64(0)}}
	if code, body, _ := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, other, ops); code != http.StatusNotFound {
		t.Errorf("READ_FILE of another path: %d %s, want 404", code, body)
	}
	for hdr, want := range map[string]int{"ops": http.StatusOK, "dev": http.StatusForbidden} {
		req, _ := http.NewRequest(http.MethodGet, h.base+"/files/read?path=/master/log&offset=0", nil)
		req.Header = map[string]http.Header{"ops": ops, "dev": dev}[hdr].Clone()
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != want {
			t.Errorf("/files/read of /master/log as %s: %d, want %d", hdr, r.StatusCode, want)
		}
	}
}
