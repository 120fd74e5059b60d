package resources

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "value")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestParse(t *testing.T) {
	jsonFile := writeFile(t, `[{"name":"cpus","type":"SCALAR","scalar":{"value":2}},
		{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":80,"end":81}]}}]`)
	textFile := writeFile(t, "cpus:3;mem(web):512\n")
	tests := []struct {
		name    string
		in      string
		want    string // Format of the result
		wantErr string // part of the error; the error must wrap errdefs.ErrInvalid
	}{
		{name: "text", in: "cpus:4;mem:8192;disk:10000;ports:[31000-32000]", want: "cpus:4; mem:8192; disk:10000; ports:[31000-32000]"},
		{name: "spaces and empty parts", in: " cpus:1 ; mem : 128 ;;disk:10;", want: "cpus:1; mem:128; disk:10"},
		{name: "order kept, nothing merged", in: "mem:1;cpus:0.1;cpus:0.2", want: "mem:1; cpus:0.1; cpus:0.2"},
		{name: "roles", in: "cpus(web):2;mem(*):64;disk( a/b ):5", want: "cpus(web):2; mem:64; disk(a/b):5"},
		{name: "ranges with lone numbers", in: "ports:[31000-31001, 31005,8080-8080]", want: "ports:[31000-31001, 31005-31005, 8080-8080]"},
		{name: "empty ranges", in: "ports:[]", want: "ports:[]"},
		{name: "sets", in: "gpus:1;disks:{a, b ,c}", want: "gpus:1; disks:{a, b, c}"},
		{name: "scalars round to three decimals", in: "cpus:0.0004;mem:1e3", want: "cpus:0; mem:1000"},
		{name: "empty", in: "  ", want: ""},
		{name: "JSON", in: `[{"name":"cpus","type":"SCALAR","scalar":{"value":1.5}},{"name":"mem","type":"SCALAR","scalar":{"value":64},"role":"web"}]`,
			want: "cpus:1.5; mem(web):64"},
		{name: "JSON reservations", in: `[{"name":"cpus","type":"SCALAR","scalar":{"value":1},"reservations":[{"type":"STATIC","role":"a"},{"type":"DYNAMIC","role":"a/b"}]}]`,
			want: "cpus(a/b):1"},
		{name: "JSON empty array", in: "[]", want: ""},
		{name: "file with JSON", in: "file://" + jsonFile, want: "cpus:2; ports:[80-81]"},
		{name: "file with text", in: "file://" + textFile, want: "cpus:3; mem(web):512"},

		{name: "no value", in: "cpus", wantErr: `resource "cpus": want name:value`},
		{name: "no name", in: ":4", wantErr: "no name"},
		{name: "no name before a role", in: "(web):4", wantErr: "no name"},
		{name: "not a number", in: "cpus:lots", wantErr: `bad scalar "lots"`},
		{name: "negative", in: "cpus:-1", wantErr: "not a finite non-negative number"},
		{name: "NaN", in: "cpus:NaN", wantErr: `bad scalar "NaN"`},
		{name: "Inf", in: "cpus:+Inf", wantErr: `bad scalar "+Inf"`},
		{name: "overflow", in: "cpus:1e999", wantErr: "out of range"},
		{name: "inverted range", in: "ports:[9-3]", wantErr: `range "9-3" ends before it begins`},
		{name: "bad range", in: "ports:[a-3]", wantErr: `bad range "a-3"`},
		{name: "negative range", in: "ports:[-3]", wantErr: `bad range "-3"`},
		{name: "overlapping ranges", in: "ports:[1-5,3-8]", wantErr: "overlap"},
		{name: "unterminated ranges", in: "ports:[1-2", wantErr: "unterminated ranges"},
		{name: "unterminated set", in: "disks:{a", wantErr: "unterminated set"},
		{name: "set item twice", in: "disks:{a,a}", wantErr: "appears twice"},
		{name: "unclosed role", in: "cpus(web:1", wantErr: "mismatched parentheses"},
		{name: "stray parenthesis", in: "cpus)web(:1", wantErr: "mismatched parentheses"},
		{name: "empty role", in: "cpus():1", wantErr: "empty role"},
		{name: "bad role", in: "cpus(-web):1", wantErr: "beginning with '-'"},
		{name: "JSON syntax", in: `[{"name":`, wantErr: "not a JSON array"},
		{name: "JSON without type", in: `[{"name":"cpus"}]`, wantErr: "JSON resource 0"},
		{name: "JSON text type", in: `[{"name":"x","type":"TEXT","text":{"value":"a"}}]`, wantErr: "not a resource type"},
		{name: "JSON negative", in: `[{"name":"cpus","type":"SCALAR","scalar":{"value":-2}}]`, wantErr: "non-negative"},
		{name: "JSON empty name", in: `[{"name":"","type":"SCALAR","scalar":{"value":2}}]`, wantErr: "empty name"},
		{name: "JSON inverted range", in: `[{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":9,"end":3}]}}]`, wantErr: "ends before it begins"},
		{name: "missing file", in: "file:///nonexistent/resources.json", wantErr: "/nonexistent/resources.json"},
		{name: "file:// with no path", in: "file://", wantErr: "names no file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Parse(tt.in)
			if tt.wantErr != "" {
				if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want ErrInvalid with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := Format(rs); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if _, err := FromProto(rs); err != nil {
				t.Fatalf("FromProto refuses what Parse gave: %v", err)
			}
		})
	}
}

func TestParseMissingFileIsNotExist(t *testing.T) {
	_, err := Parse("file://" + filepath.Join(t.TempDir(), "absent"))
	if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("error %v, want both ErrNotExist and ErrInvalid", err)
	}
}

func TestParseFormatRoundTrip(t *testing.T) {
	for _, in := range []string{
		"cpus:4; mem:8192; disk:10000; ports:[31000-32000]",
		"cpus(web):0.5; cpus:1.75; ports:[1-1, 3-4]; disks(a/b):{x, y}",
		"gpus:0.001",
		"",
	} {
		t.Run(in, func(t *testing.T) {
			rs, err := Parse(in)
			if err != nil {
				t.Fatal(err)
			}
			if got := Format(rs); got != in {
				t.Fatalf("Format(Parse(%q)) = %q", in, got)
			}
			again, err := Parse(Format(rs))
			if err != nil {
				t.Fatal(err)
			}
			a, _ := FromProto(rs)
			b, _ := FromProto(again)
			if !a.Equal(b) {
				t.Fatalf("round trip changed %s into %s", a, b)
			}
		})
	}
	// What ToProto writes reads back the same.
	want := Of(cpus(2), reserved("web", 1), ports(Range{80, 80}, Range{443, 445}), set("a", "b"))
	got, err := Parse(Format(want.ToProto("analytics")))
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := FromProto(got); !r.Equal(want) {
		t.Fatalf("got %s, want %s", r, want)
	}
}

func TestParseAttributes(t *testing.T) {
	file := writeFile(t, "rack:r1;level:2\n")
	tests := []struct {
		in      string
		want    []string // name=type for each attribute
		wantErr string
	}{
		{in: "rack:2;os:debian;zone:[1-3];disks:{a,b};version:1.2.3", want: []string{"rack=SCALAR", "os=TEXT", "zone=RANGES", "disks=SET", "version=TEXT"}},
		{in: " rack : r2 ;", want: []string{"rack=TEXT"}},
		{in: "", want: nil},
		{in: "file://" + file, want: []string{"rack=TEXT", "level=SCALAR"}},
		{in: "oops", wantErr: "want name:value"},
		{in: ":x", wantErr: "no name"},
		{in: "rack:", wantErr: "no value"},
		{in: "zone:[3-1]", wantErr: "ends before it begins"},
		{in: "zone:[1-3", wantErr: "unterminated"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			as, err := ParseAttributes(tt.in)
			if tt.wantErr != "" {
				if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want ErrInvalid with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range as {
				got = append(got, a.GetName()+"="+a.GetType().String())
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	as, _ := ParseAttributes("rack:2;os:debian;zone:[1-3]")
	if as[0].GetScalar().GetValue() != 2 || as[1].GetText().GetValue() != "debian" ||
		as[2].GetRanges().GetRange()[0].GetEnd() != 3 || as[2].GetType() != mesos.Value_RANGES {
		t.Fatalf("values %v", as)
	}
}
