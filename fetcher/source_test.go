package fetcher

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/errdefs"
)

func TestParseSourceKinds(t *testing.T) {
	tests := []struct {
		value string
		kind  sourceKind
		name  string
	}{
		{"http://h/a/b.tgz", srcHTTP, "b.tgz"},
		{"https://h/a/b.tgz?x=1", srcHTTP, "b.tgz"},
		{"file:///opt/a.bin", srcLocalAbs, "a.bin"},
		{"/opt/a.bin", srcLocalAbs, "a.bin"},
		{"pkg/a.bin", srcLocalRel, "a.bin"},
		{"git::file:///srv/repo.git", srcGit, "repo"},
		{"git::https://h/org/repo.git?ref=v1", srcGit, "repo"},
		{"git::ssh://git@h/org/repo.git", srcGit, "repo"},
		{"git://h/org/repo.git", srcGit, "repo"},
		{"GIT::file:///srv/repo.git", srcGit, "repo"},
		// Mesos sends every other scheme to `hadoop fs -copyToLocal`; the
		// cloud ones go-getter v1 used to serve are among them now.
		{"hdfs://nn:8020/apps/job.jar", srcHadoop, "job.jar"},
		{"s3://bucket/apps/job.jar", srcHadoop, "job.jar"},
		{"s3a://bucket/apps/job.jar", srcHadoop, "job.jar"},
		{"s3n://bucket/apps/job.jar", srcHadoop, "job.jar"},
		{"gs://bucket/apps/job.jar", srcHadoop, "job.jar"},
		{"maprfs:///apps/job.jar", srcHadoop, "job.jar"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			s, err := parseSource(tt.value, "/frameworks")
			if err != nil {
				t.Fatal(err)
			}
			if s.kind != tt.kind || s.name != tt.name {
				t.Fatalf("kind %v name %q, want %v %q", s.kind, s.name, tt.kind, tt.name)
			}
			if s.dir != (tt.kind == srcGit) {
				t.Fatalf("dir = %v", s.dir)
			}
			// go-getter knows the forced getter only by its lower-case name.
			if s.kind == srcGit && !strings.HasPrefix(s.raw, "git::") && !strings.HasPrefix(s.raw, "git://") {
				t.Fatalf("raw %q", s.raw)
			}
		})
	}
}

func TestParseSourceRefused(t *testing.T) {
	tests := []struct {
		name  string
		value string
		// want are substrings of the error.
		want []string
		// secret must not appear in the error.
		secret string
	}{
		{"go-getter s3 form", "s3::https://s3.amazonaws.com/bucket/app.tgz?aws_access_key_id=AKIDEXAMPLE&aws_access_key_secret=SECRETKEY",
			[]string{"s3::", "Hadoop", "s3a://", "presigned https://"}, "SECRETKEY"},
		{"go-getter s3 form, bucket host", "s3::https://bucket.s3.eu-west-1.amazonaws.com/app.tgz",
			[]string{"s3::", "Hadoop", "presigned"}, ""},
		{"go-getter gcs form", "gcs::https://www.googleapis.com/storage/v1/bucket/app.tgz",
			[]string{"gcs::", "gs://", "Hadoop", "signed https://"}, ""},
		{"gcs scheme", "gcs://bucket/app.tgz", []string{"gcs://", "gs://", "Hadoop"}, ""},
		{"other forced getter", "hg::https://h/repo", []string{"only git::"}, ""},
		{"forced http", "http::https://h/a.bin", []string{"only git::"}, ""},
		{"git ext transport", "git::ext::sh -c id", []string{"git source must be"}, ""},
		{"git fd transport", "git::fd::3", []string{"git source must be"}, ""},
		{"git without scheme", "git::h/org/repo", []string{"git source must be"}, ""},
		{"git ref like an option", "git::https://h/org/repo.git?ref=--orphan", []string{"starts with '-'"}, ""},
		{"git checksum", "git::https://h/org/repo.git?checksum=sha256:" + strings.Repeat("0", 64), []string{"checksum"}, ""},
		{"ftp", "ftp://h/a.bin", []string{"ftp URIs are not supported"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSource(tt.value, "")
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if tt.secret != "" {
				if strings.Contains(err.Error(), tt.secret) {
					t.Errorf("error shows the secret: %v", err)
				}
				if shown := redactValue(tt.value); strings.Contains(shown, tt.secret) {
					t.Errorf("redactValue shows the secret: %s", shown)
				}
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"https://h/a.bin", "https://h/a.bin"},
		// Unredacted queries are shown as sent: not reordered, not re-encoded.
		{"https://h/a.bin?b=2&a=%2F+x", "https://h/a.bin?b=2&a=%2F+x"},
		{"https://user:pw@h/a.bin", "https://user:redacted@h/a.bin"},
		{"https://user@h/a.bin", "https://user@h/a.bin"},
		{"https://h/a.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20250101&X-Amz-Signature=abcd&X-Amz-Security-Token=tok",
			"https://h/a.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=redacted&X-Amz-Signature=redacted&X-Amz-Security-Token=redacted"},
		{"https://h/o?GoogleAccessId=sa&Expires=1&Signature=abc", "https://h/o?GoogleAccessId=sa&Expires=1&Signature=redacted"},
		{"https://acct.blob.core.windows.net/c/b?sv=2020&sig=abc", "https://acct.blob.core.windows.net/c/b?sv=2020&sig=redacted"},
		{"ssh://git@h/repo.git?ref=main&sshkey=LS0tLS1CRUdJTg", "ssh://git@h/repo.git?ref=main&sshkey=redacted"},
		{"hdfs://u:pw@nn/apps/job.jar", "hdfs://u:redacted@nn/apps/job.jar"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := url.Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := redactURL(u); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestScrubSecrets(t *testing.T) {
	u, err := url.Parse("https://bot:t0ken-s3cret@h/org/repo.git?sshkey=a2V5LWJ5dGVz")
	if err != nil {
		t.Fatal(err)
	}
	msg := "fatal: unable to access 'https://bot:t0ken-s3cret@h/org/repo.git/': key a2V5LWJ5dGVz"
	got := scrubSecrets(msg, u)
	if strings.Contains(got, "t0ken-s3cret") || strings.Contains(got, "a2V5LWJ5dGVz") {
		t.Fatalf("secret left in %q", got)
	}
}
