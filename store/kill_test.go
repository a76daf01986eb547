package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	helperEnv    = "DISTILLERY_STORE_HELPER"
	helperMarker = "UPLOAD-IN-PROGRESS"
	killBigSize  = 24 << 20
	killAt       = 12 << 20
)

// TestHelperProcess is not a test: TestPublishKilledUpload runs the test
// binary again with only this function selected, to publish in a process
// it can SIGKILL. Once half of the big file has been read, the helper says
// so on stdout and stalls, so the kill always lands mid-upload.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "publish" {
		t.Skip("helper process for TestPublishKilledUpload")
	}
	ctx := context.Background()
	s, err := Open(ctx, os.Getenv("HELPER_URL"), Options{PartSize: 5 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	dir := os.Getenv("HELPER_DIR")
	files := []File{
		{Path: filepath.Join(dir, "a-config.json"), Name: "a-config.json"},
		{Path: filepath.Join(dir, "z-weights.bin"), Name: "z-weights.bin"},
	}
	_, err = Publish(ctx, s, "m", "v2", files, nil, PublishOptions{Progress: func(file string, done, _ int64) {
		if file == "z-weights.bin" && done >= killAt {
			fmt.Println(helperMarker)
			time.Sleep(time.Minute) // wait for SIGKILL
		}
	}})
	fmt.Fprintln(os.Stderr, "helper was not killed; publish returned:", err)
	os.Exit(3)
}

// TestPublishKilledUpload kills a publisher mid-upload and checks what
// readers see: latest still names v1, v2 is not a version, the killed file
// is not visible under v2, and publishing v2 again works.
func TestPublishKilledUpload(t *testing.T) {
	for _, kind := range []string{"s3", "file"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			var s Store
			var srv *s3Server
			var bucket string
			switch kind {
			case "s3":
				srv = startS3(t)
				bucket = srv.bucket()
				s = srv.open(t, "s3://"+bucket+"/rel", Options{PartSize: 5 << 20})
			case "file":
				s, _ = openFileStore(t)
			}
			v1 := map[string][]byte{"a-config.json": []byte(`{"v":1}`), "z-weights.bin": []byte("v1 weights")}
			if _, err := Publish(ctx, s, "m", "v1", writeFiles(t, v1), nil); err != nil {
				t.Fatal(err)
			}

			v2 := map[string][]byte{"a-config.json": []byte(`{"v":2}`), "z-weights.bin": randomBytes(t, killBigSize)}
			v2Files := writeFiles(t, v2)
			killPublisher(t, s.URL(), filepath.Dir(v2Files[0].Path))

			// Readers still see v1, completely.
			r, err := Latest(ctx, s, "m")
			if err != nil || r.Version != "v1" {
				t.Fatalf("Latest after kill = %+v, %v; want v1", r, err)
			}
			checkDownload(t, s, r, v1)
			if vs, err := Versions(ctx, s, "m"); err != nil || strings.Join(vs, ",") != "v1" {
				t.Fatalf("Versions after kill = %v, %v; want [v1]", vs, err)
			}
			if _, err := ReadRelease(ctx, s, "m", "v2"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("v2 release.json after kill: %v, want ErrNotFound", err)
			}
			// The killed file is not visible, not even partially.
			if _, err := s.Stat(ctx, "m/v2/z-weights.bin"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Stat killed file: %v, want ErrNotFound", err)
			}
			objs, err := s.List(ctx, "m/v2/")
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				if o.Key != "m/v2/a-config.json" {
					t.Errorf("visible after kill: %+v", o)
				}
			}
			if srv != nil {
				// Prove the kill hit a multipart upload in flight.
				var n int
				for u := range srv.rawClient(t).ListIncompleteUploads(ctx, bucket, "rel/m/v2/", true) {
					if u.Err != nil {
						t.Fatal(u.Err)
					}
					n++
				}
				if n == 0 {
					t.Error("no unfinished multipart upload on the server: the kill did not land mid-upload")
				}
				if _, err := os.Stat(filepath.Join(srv.Dir, bucket, "rel", "m", "v2", "z-weights.bin")); err == nil {
					t.Error("server folder holds the killed file")
				}
			}

			// Publishing again completes v2 and moves latest.
			r2, err := Publish(ctx, s, "m", "v2", v2Files, nil)
			if err != nil {
				t.Fatalf("re-publish after kill: %v", err)
			}
			r, err = Latest(ctx, s, "m")
			if err != nil || r.Version != "v2" || !r.Created.Equal(r2.Created) {
				t.Fatalf("Latest after re-publish = %+v, %v", r, err)
			}
			checkDownload(t, s, r, v2)
		})
	}
}

// killPublisher runs TestHelperProcess publishing m@v2 from dir to url,
// waits until it is mid-upload and SIGKILLs it.
func killPublisher(t *testing.T, url, dir string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=publish", "HELPER_URL="+url, "HELPER_DIR="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	marker := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), helperMarker) {
				marker <- true
				return
			}
		}
		marker <- false
	}()
	select {
	case ok := <-marker:
		if !ok {
			cmd.Wait()
			t.Fatalf("helper ended without reaching the upload: %s", stderr.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper did not reach the upload within 60s: %s", stderr.String())
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 {
		t.Fatalf("helper exit: %v, want killed by signal", err)
	}
}
