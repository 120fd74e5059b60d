package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/mesolite/mesolite/artifactsrv"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/cliflags"
	"github.com/mesolite/mesolite/internal/tlsconfig"
)

// artifactsMain is `mesolite artifacts serve|push`.
func artifactsMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "serve" && args[0] != "push") {
		fmt.Fprintln(stderr, "usage: mesolite artifacts serve --dir=DIR [--ip=127.0.0.1] [--port=8000] [--upload_token=T] [--ssl_cert_file=F --ssl_key_file=F]\n       mesolite artifacts push FILE http(s)://HOST:PORT/PATH [--token=T] [--ssl_ca_file=F]")
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
			return 0
		}
		return 2
	}
	if args[0] == "serve" {
		return artifactsServe(ctx, args[1:], stderr)
	}
	return artifactsPush(ctx, args[1:], stdout, stderr)
}

func artifactsServe(ctx context.Context, args []string, stderr io.Writer) int {
	fs := cliflags.New("artifacts serve", `mesolite artifacts serve --dir=DIR [flags]

Serves the files under DIR over HTTP (HTTPS with --ssl_cert_file and
--ssl_key_file) for agents to fetch (executor binaries, archives): Range
and conditional requests, directory indexes in HTML or JSON, sha256
digests, and uploads with a bearer token.`)
	fs.NoArgs = true
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the directory to serve (required)")
	ip := fs.String("ip", artifactsrv.DefaultIP, "IP address to listen on")
	port := fs.Int("port", artifactsrv.DefaultPort, "port to listen on")
	token := fs.String("upload_token", "", "enable PUT and DELETE for clients presenting this bearer token")
	maxUpload := fs.Int64("max_upload_bytes", 0, "largest accepted upload in bytes (0: unlimited)")
	level := fs.String("logging_level", "INFO", "log level: ERROR, WARNING, INFO, DEBUG")
	ssl := defineSSLFlags(fs, "CA bundle of the cluster's certificates (the server calls no peer; accepted so that one\n"+
		"environment serves every process)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "mesolite artifacts serve:", err)
		return 2
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "mesolite artifacts serve: --dir is required")
		return 2
	}
	log, err := newLogger(stderr, *level, "text")
	if err != nil {
		fmt.Fprintln(stderr, "mesolite artifacts serve:", err)
		return 2
	}
	st, err := ssl.setup()
	if err != nil {
		fmt.Fprintln(stderr, "mesolite artifacts serve: TLS:", err)
		return 1
	}
	srv, err := artifactsrv.New(artifactsrv.Options{Dir: *dir, IP: *ip, Port: *port, UploadToken: *token, MaxUploadBytes: *maxUpload, TLS: st.server, Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, "mesolite artifacts serve:", err)
		return 1
	}
	defer srv.Close()
	if err := srv.Serve(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintln(stderr, "mesolite artifacts serve:", err)
		return 1
	}
	return 0
}

func artifactsPush(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cliflags.New("artifacts push", `mesolite artifacts push FILE http(s)://HOST:PORT/PATH [--token=T] [--ssl_ca_file=F]

Uploads FILE to an artifact server started with --upload_token.`)
	fs.SetOutput(stderr)
	token := fs.String("token", "", "the server's upload token")
	caFile := fs.String("ssl_ca_file", "", "CA bundle to verify an https server with (default: the system's roots)")
	var pos []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			fmt.Fprintln(stderr, "mesolite artifacts push:", err)
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) != 2 {
		fmt.Fprintln(stderr, "usage: mesolite artifacts push FILE http(s)://HOST:PORT/PATH [--token=T] [--ssl_ca_file=F]")
		return 2
	}
	tlsCfg, err := tlsconfig.Files{CA: *caFile}.ClientIf(*caFile != "")
	if err != nil {
		fmt.Fprintln(stderr, "mesolite artifacts push:", err)
		return 2
	}
	if err := artifactsrv.Push(ctx, pos[0], pos[1], *token, tlsCfg, stdout); err != nil {
		fmt.Fprintln(stderr, "mesolite artifacts push:", errdefs.Message(err))
		return 1
	}
	return 0
}
