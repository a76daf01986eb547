package store

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	testAccess = "distillery-test-key"
	testSecret = "distillery-test-secret-do-not-print"
)

// s3Server is a real S3 server (versitygw over a posix folder) for one test.
type s3Server struct {
	Endpoint string // http://127.0.0.1:PORT
	Dir      string // buckets are folders in here
}

// findVersitygw looks for the versitygw binary on PATH, then in GOPATH/bin.
func findVersitygw() string {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "versitygw")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// startS3 runs versitygw on a free local port for the duration of the test
// and points the AWS_* environment at it. Without the binary the test is
// skipped, or fails when DISTILLERY_REQUIRE_S3=1 (as `make test` sets).
func startS3(t *testing.T) *s3Server {
	t.Helper()
	bin := findVersitygw()
	if bin == "" {
		msg := "versitygw not found on PATH or in $(go env GOPATH)/bin; install it with: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"
		if os.Getenv("DISTILLERY_REQUIRE_S3") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--access", testAccess, "--secret", testSecret, "--port", addr, "--quiet", "posix", dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		logf.Close()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("versitygw exited early: %v\n%s", err, log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not listen on %s within 15s", addr)
		}
	}
	srv := &s3Server{Endpoint: "http://" + addr, Dir: dir}
	srv.setEnv(t, testAccess, testSecret)
	return srv
}

// setEnv points the standard AWS variables at the server with the given
// credentials (the test process's env; subprocesses inherit it).
func (srv *s3Server) setEnv(t *testing.T, access, secret string) {
	t.Setenv("AWS_ENDPOINT_URL", srv.Endpoint)
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_ACCESS_KEY_ID", access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", "us-east-1")
}

// open opens s3://bucket[/prefix] on the server, creating the bucket.
func (srv *s3Server) open(t *testing.T, url string, opts Options) Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts.CreateBucket = true
	s, err := Open(ctx, url, opts)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	return s
}

var bucketSeq int

// bucket returns a fresh bucket name.
func (srv *s3Server) bucket() string {
	bucketSeq++
	return fmt.Sprintf("bkt%d", bucketSeq)
}
