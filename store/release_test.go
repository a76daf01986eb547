package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// storeKinds opens a fresh store of each kind for release tests.
var storeKinds = []struct {
	name string
	open func(t *testing.T) Store
}{
	{"file", func(t *testing.T) Store { s, _ := openFileStore(t); return s }},
	{"s3", func(t *testing.T) Store {
		srv := startS3(t)
		return srv.open(t, "s3://"+srv.bucket()+"/releases", Options{PartSize: 5 << 20})
	}},
}

// writeFiles creates local files (name -> content) and returns them as
// publishable Files.
func writeFiles(t *testing.T, contents map[string][]byte) []File {
	t.Helper()
	dir := t.TempDir()
	var files []File
	for name, data := range contents {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, File{Path: p, Name: name})
	}
	return files
}

// checkDownload downloads r and compares every file with want.
func checkDownload(t *testing.T, s Store, r Release, want map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	if err := Download(context.Background(), s, r, dir); err != nil {
		t.Fatalf("Download: %v", err)
	}
	var n int
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if w, ok := want[filepath.ToSlash(rel)]; !ok || !bytes.Equal(got, w) {
			t.Errorf("downloaded %s: unexpected or wrong content (%d bytes)", rel, len(got))
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Errorf("downloaded %d files, want %d", n, len(want))
	}
}

func TestPublishLatestDownload(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			s := kind.open(t)
			ctx := context.Background()
			if _, err := Latest(ctx, s, "tiny"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Latest before publish: %v, want ErrNotFound", err)
			}
			v1 := map[string][]byte{
				"model.safetensors":    randomBytes(t, 7<<20), // two parts on S3
				"tokenizer/vocab.json": []byte(`{"a":0}`),
				"config.json":          []byte(`{"layers":2}`),
			}
			meta := map[string]string{"teacher": "big-model", "recipe": "r1"}
			var progressed int64
			r1, err := Publish(ctx, s, "tiny", "v1", writeFiles(t, v1), meta, PublishOptions{
				Progress: func(file string, done, total int64) {
					if file == "model.safetensors" && total == 7<<20 {
						progressed = done
					}
				},
			})
			if err != nil {
				t.Fatalf("Publish v1: %v", err)
			}
			if progressed != 7<<20 {
				t.Errorf("progress reached %d bytes of model.safetensors, want %d", progressed, 7<<20)
			}
			if len(r1.Files) != 3 || r1.Files[0].Key != "config.json" || r1.Created.IsZero() {
				t.Errorf("release = %+v", r1)
			}
			for _, f := range r1.Files {
				if f.SHA256 != sha256Hex(v1[f.Key]) || f.Size != int64(len(v1[f.Key])) {
					t.Errorf("release file %s: %+v", f.Key, f)
				}
			}
			got, err := Latest(ctx, s, "tiny")
			if err != nil {
				t.Fatalf("Latest: %v", err)
			}
			if got.Version != "v1" || !got.Created.Equal(r1.Created) || got.Meta["teacher"] != "big-model" {
				t.Errorf("Latest = %+v", got)
			}
			checkDownload(t, s, got, v1)

			// Same content again: no-op returning the stored release.
			again, err := Publish(ctx, s, "tiny", "v1", writeFiles(t, v1), meta)
			if err != nil {
				t.Fatalf("re-publish identical v1: %v", err)
			}
			if !again.Created.Equal(r1.Created) {
				t.Errorf("identical re-publish rewrote the release (created %v, was %v)", again.Created, r1.Created)
			}
			// Different content under the same version: refused.
			changed := map[string][]byte{"config.json": []byte(`{"layers":3}`)}
			if _, err := Publish(ctx, s, "tiny", "v1", writeFiles(t, changed), meta); !errors.Is(err, ErrVersionExists) {
				t.Fatalf("publish different v1: %v, want ErrVersionExists", err)
			}
			if _, err := Publish(ctx, s, "tiny", "v1", writeFiles(t, v1), map[string]string{"teacher": "other"}); !errors.Is(err, ErrVersionExists) {
				t.Fatalf("publish v1 with other meta: %v, want ErrVersionExists", err)
			}

			// A second version moves latest; the first stays downloadable.
			v2 := map[string][]byte{"model.safetensors": []byte("v2 weights")}
			if _, err := Publish(ctx, s, "tiny", "v2", writeFiles(t, v2), nil); err != nil {
				t.Fatalf("Publish v2: %v", err)
			}
			got, err = Latest(ctx, s, "tiny")
			if err != nil || got.Version != "v2" {
				t.Fatalf("Latest after v2 = %+v, %v", got, err)
			}
			checkDownload(t, s, got, v2)
			old, err := ReadRelease(ctx, s, "tiny", "v1")
			if err != nil {
				t.Fatal(err)
			}
			checkDownload(t, s, old, v1)
			// Re-publishing the older v1 must not move latest back.
			if _, err := Publish(ctx, s, "tiny", "v1", writeFiles(t, v1), meta); err != nil {
				t.Fatal(err)
			}
			if got, _ := Latest(ctx, s, "tiny"); got.Version != "v2" {
				t.Errorf("latest moved back to %s", got.Version)
			}
			vs, err := Versions(ctx, s, "tiny")
			if err != nil || strings.Join(vs, ",") != "v1,v2" {
				t.Errorf("Versions = %v, %v", vs, err)
			}
		})
	}
}

func TestPublishRejectsBadInput(t *testing.T) {
	s, _ := openFileStore(t)
	ctx := context.Background()
	ok := writeFiles(t, map[string][]byte{"a": []byte("a")})
	tests := []struct {
		name, rname, version string
		files                []File
	}{
		{"slash in name", "a/b", "v1", ok},
		{"dotdot name", "..", "v1", ok},
		{"dotdot in version", "m", "v1..2", ok},
		{"slash in version", "m", "v1/x", ok},
		{"empty version", "m", "", ok},
		{"version latest", "m", "latest", ok},
		{"leading dot", "m", ".v1", ok},
		{"escaping file name", "m", "v1", []File{{Path: ok[0].Path, Name: "../x"}}},
		{"absolute file name", "m", "v1", []File{{Path: ok[0].Path, Name: "/etc/x"}}},
		{"reserved file name", "m", "v1", []File{{Path: ok[0].Path, Name: "release.json"}}},
		{"duplicate file", "m", "v1", []File{{Path: ok[0].Path, Name: "a"}, {Path: ok[0].Path, Name: "a"}}},
		{"file and folder", "m", "v1", []File{{Path: ok[0].Path, Name: "a"}, {Path: ok[0].Path, Name: "a/b"}}},
		{"no files", "m", "v1", nil},
		{"missing local file", "m", "v1", []File{{Path: "/does/not/exist", Name: "a"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Publish(ctx, s, tc.rname, tc.version, tc.files, nil); err == nil {
				t.Fatal("Publish succeeded")
			}
			if objs, _ := s.List(ctx, ""); len(objs) != 0 {
				t.Fatalf("rejected publish wrote %v", objs)
			}
		})
	}
}

// TestLatestDetectsTampering: the pointer's sha256 protects release.json,
// and Download checks every file against release.json.
func TestLatestDetectsTampering(t *testing.T) {
	s, dir := openFileStore(t)
	ctx := context.Background()
	r, err := Publish(ctx, s, "m", "v1", writeFiles(t, map[string][]byte{"w.bin": []byte("weights")}), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Corrupt the stored file: Download must fail and leave nothing.
	wbin := filepath.Join(dir, "m", "v1", "w.bin")
	if err := os.WriteFile(wbin, []byte("WEIGHTS"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := Download(ctx, s, r, dst); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("Download of corrupt file: %v", err)
	}
	if entries, _ := os.ReadDir(dst); len(entries) != 0 {
		t.Fatalf("download left %s", entries[0].Name())
	}
	// Edit release.json behind the pointer's back.
	rel := filepath.Join(dir, "m", "v1", "release.json")
	raw, _ := os.ReadFile(rel)
	if err := os.WriteFile(rel, bytes.Replace(raw, []byte(`"v1"`), []byte(`"v1" `), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Latest(ctx, s, "m"); err == nil || !strings.Contains(err.Error(), "pointer says") {
		t.Fatalf("Latest with edited release.json: %v", err)
	}
	// A pointer to a version that is gone is damage, not "nothing published".
	os.Remove(rel)
	if _, err := Latest(ctx, s, "m"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("Latest with dangling pointer: %v", err)
	}
	// A pointer that tries to leave its name's folder is refused.
	p, _ := json.Marshal(pointer{Version: "v1", Release: "other/v1/release.json"})
	os.WriteFile(filepath.Join(dir, "m", "latest"), p, 0o644)
	if _, err := Latest(ctx, s, "m"); err == nil || !strings.Contains(err.Error(), "bad pointer") {
		t.Fatalf("Latest with foreign pointer: %v", err)
	}
}

func TestVersionsOnlyComplete(t *testing.T) {
	s, _ := openFileStore(t)
	ctx := context.Background()
	for _, v := range []string{"v10", "v2", "v1.10", "v1.9"} {
		if _, err := Publish(ctx, s, "m", v, writeFiles(t, map[string][]byte{"f": []byte(v)}), nil); err != nil {
			t.Fatal(err)
		}
	}
	// An upload that never got its release.json is not a version.
	if _, err := s.Put(ctx, "m/v99/f", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	vs, err := Versions(ctx, s, "m")
	if err != nil || strings.Join(vs, ",") != "v1.9,v1.10,v2,v10" {
		t.Fatalf("Versions = %v, %v", vs, err)
	}
	if vs, err := Versions(ctx, s, "none"); err != nil || len(vs) != 0 {
		t.Fatalf("Versions(none) = %v, %v", vs, err)
	}
}

func TestNaturalLess(t *testing.T) {
	tests := []struct {
		a, b string
		less bool
	}{
		{"v2", "v10", true},
		{"v10", "v2", false},
		{"1.9", "1.10", true},
		{"a", "b", true},
		{"v1", "v1", false},
		{"v1", "v1.1", true},
		{"1.01", "1.1", true}, // numeric tie, byte order decides
		{"1.1", "1.01", false},
		{"2024-01-02", "2024-01-10", true},
	}
	for _, tc := range tests {
		if got := naturalLess(tc.a, tc.b); got != tc.less {
			t.Errorf("naturalLess(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}
