package agent

import (
	"errors"
	"testing"

	"github.com/mesolite/mesolite/errdefs"
)

func TestParseResources(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"cpus:4;mem:8192;disk:10000;ports:[31000-32000]", "cpus:4; mem:8192; disk:10000; ports:[31000-32000]", false},
		{"cpus(web):2;ports:[80-80, 443-443]", "cpus:2; ports:[80-80, 443-443]", false},
		{"gpus:1;names:{a,b}", "gpus:1; names:{a, b}", false},
		{`[{"name":"cpus","type":"SCALAR","scalar":{"value":1.5}}]`, "cpus:1.5", false},
		{"cpus", "", true},
		{"cpus:-1", "", true},
		{"ports:[9-3]", "", true},
		{"ports:[1-2", "", true},
		{`[{"name":`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			rs, err := ParseResources(tt.in)
			if tt.wantErr {
				if !errors.Is(err, errdefs.ErrInvalid) {
					t.Fatalf("want ErrInvalid, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ResourcesString(rs); got != tt.want {
				t.Fatalf("got %q want %q", got, tt.want)
			}
		})
	}
}

func TestDetectResourcesKeepsGiven(t *testing.T) {
	given, _ := ParseResources("cpus:0.5")
	rs := DetectResources(given, t.TempDir())
	if v := scalarOf(rs, "cpus"); v != 0.5 {
		t.Fatalf("cpus %v", v)
	}
	if scalarOf(rs, "mem") <= 0 || scalarOf(rs, "disk") <= 0 {
		t.Fatalf("mem/disk not detected: %s", ResourcesString(rs))
	}
}

func TestParseAttributes(t *testing.T) {
	as, err := ParseAttributes("rack:2;os:debian;zone:[1-3]")
	if err != nil || len(as) != 3 || as[1].GetText().GetValue() != "debian" || as[0].GetScalar().GetValue() != 2 {
		t.Fatalf("%v %v", as, err)
	}
	if _, err := ParseAttributes("oops"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatal(err)
	}
}
