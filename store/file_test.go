package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func openFileStore(t *testing.T) (Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(context.Background(), "file://"+dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// onlyReader hides other interfaces (Seeker, WriterTo) of a reader, like a
// network stream.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// failAfter returns data then an error, like a dropped connection.
type failAfter struct {
	data []byte
	err  error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func readKey(t *testing.T, s Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

// roundTripCases are shared by the file and S3 round-trip tests.
var roundTripCases = []struct {
	name    string
	key     string
	data    []byte
	unknown bool // pass size -1 and a non-seekable reader
}{
	{"small", "a.txt", []byte("hello distillery\n"), false},
	{"empty", "empty.bin", []byte{}, false},
	{"nested", "m/v1/tokenizer/vocab.json", []byte(`{"a":1}`), false},
	{"unknown size", "stream.bin", bytes.Repeat([]byte("xyz"), 100_000), true},
}

func TestFileRoundTrip(t *testing.T) {
	s, dir := openFileStore(t)
	ctx := context.Background()
	for _, tc := range roundTripCases {
		t.Run(tc.name, func(t *testing.T) {
			var r io.Reader = bytes.NewReader(tc.data)
			size := int64(len(tc.data))
			if tc.unknown {
				r, size = onlyReader{r}, -1
			}
			obj, err := s.Put(ctx, tc.key, r, size)
			if err != nil {
				t.Fatal(err)
			}
			want := Object{Key: tc.key, Size: int64(len(tc.data)), SHA256: sha256Hex(tc.data)}
			if obj.Key != want.Key || obj.Size != want.Size || obj.SHA256 != want.SHA256 {
				t.Errorf("Put = %+v, want %+v", obj, want)
			}
			if got := readKey(t, s, tc.key); !bytes.Equal(got, tc.data) {
				t.Errorf("Get returned %d bytes, want %d", len(got), len(tc.data))
			}
			onDisk, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(tc.key)))
			if err != nil || !bytes.Equal(onDisk, tc.data) {
				t.Errorf("file on disk: %v (%d bytes)", err, len(onDisk))
			}
			st, err := s.Stat(ctx, tc.key)
			if err != nil || st.Size != want.Size || st.ModTime.IsZero() {
				t.Errorf("Stat = %+v, %v", st, err)
			}
		})
	}
}

func TestFilePutSizeMismatch(t *testing.T) {
	s, _ := openFileStore(t)
	_, err := s.Put(context.Background(), "k", strings.NewReader("abc"), 4)
	if err == nil || !strings.Contains(err.Error(), "size mismatch") {
		t.Fatalf("err = %v, want size mismatch", err)
	}
	if _, err := s.Stat(context.Background(), "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("object exists after failed put: %v", err)
	}
}

func TestFileList(t *testing.T) {
	s, dir := openFileStore(t)
	ctx := context.Background()
	for _, k := range []string{"m/v1/a", "m/v1/b/c", "m/v10/a", "m/latest", "n/x", "top"} {
		if _, err := s.Put(ctx, k, strings.NewReader(k), int64(len(k))); err != nil {
			t.Fatal(err)
		}
	}
	// A temp file from a write in progress must not be listed.
	if err := os.WriteFile(filepath.Join(dir, "m", "v1", ".a.tmp-12345"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"m/latest", "m/v1/a", "m/v1/b/c", "m/v10/a", "n/x", "top"}},
		{"m/", []string{"m/latest", "m/v1/a", "m/v1/b/c", "m/v10/a"}},
		{"m/v1/", []string{"m/v1/a", "m/v1/b/c"}},
		{"m/v1", []string{"m/v1/a", "m/v1/b/c", "m/v10/a"}},
		{"t", []string{"top"}},
		{"nothing/", nil},
		{"m/v1/a", []string{"m/v1/a"}},
	}
	for _, tc := range tests {
		objs, err := s.List(ctx, tc.prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", tc.prefix, err)
		}
		var got []string
		for _, o := range objs {
			got = append(got, o.Key)
			if o.Size != int64(len(o.Key)) {
				t.Errorf("List(%q): %s has size %d", tc.prefix, o.Key, o.Size)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("List(%q) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
	if _, err := s.List(ctx, "../x"); err == nil {
		t.Error("List(../x) succeeded")
	}
}

func TestFileMissing(t *testing.T) {
	s, _ := openFileStore(t)
	ctx := context.Background()
	if _, err := s.Put(ctx, "file", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"nope", "dir/nope", "file/below"} {
		if _, err := s.Get(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) err = %v, want ErrNotFound", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Errorf("Stat(%q) err = %v, want ErrNotFound", key, err)
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Errorf("Delete(%q) = %v, want nil", key, err)
		}
	}
	if err := s.Delete(ctx, "file"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "file"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat after Delete: %v", err)
	}
}

var badKeys = []string{"", "/abs", "a//b", "a/", "../x", "a/../b", "a/./b", ".", "a\\b", "a/.b.tmp-123"}

func TestValidateKey(t *testing.T) {
	for _, k := range badKeys {
		if err := ValidateKey(k); err == nil {
			t.Errorf("ValidateKey(%q) = nil, want error", k)
		}
	}
	for _, k := range []string{"a", "a/b/c.json", ".gitattributes", "a..b", "m/v1.2/x"} {
		if err := ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%q) = %v", k, err)
		}
	}
}

func TestFileBadKeys(t *testing.T) {
	s, dir := openFileStore(t)
	ctx := context.Background()
	for _, k := range badKeys {
		if _, err := s.Put(ctx, k, strings.NewReader("x"), 1); err == nil || !strings.Contains(err.Error(), "invalid key") {
			t.Errorf("Put(%q) err = %v, want invalid key", k, err)
		}
		if _, err := s.Get(ctx, k); err == nil {
			t.Errorf("Get(%q) succeeded", k)
		}
	}
	// Nothing may have been written outside (or inside) the root.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("root has %d entries after rejected puts", len(entries))
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "x")); err == nil {
		t.Error("a file escaped the root")
	}
}

// TestFileAtomicity checks that a failed or cancelled write keeps the old
// content and leaves no temp file behind.
func TestFileAtomicity(t *testing.T) {
	s, dir := openFileStore(t)
	ctx := context.Background()
	old := []byte("old content")
	if _, err := s.Put(ctx, "m/obj", bytes.NewReader(old), int64(len(old))); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	boom := errors.New("connection reset")
	tests := []struct {
		name string
		ctx  context.Context
		r    io.Reader
		size int64
		want error
	}{
		{"reader fails midway", ctx, &failAfter{data: bytes.Repeat([]byte("n"), 1<<20), err: boom}, -1, boom},
		{"short read", ctx, strings.NewReader("new"), 100, nil},
		{"cancelled", cancelled, strings.NewReader("new content"), 11, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Put(tc.ctx, "m/obj", tc.r, tc.size)
			if err == nil {
				t.Fatal("Put succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if got := readKey(t, s, "m/obj"); !bytes.Equal(got, old) {
				t.Fatalf("content = %.40q (%d bytes), want old %q", got, len(got), old)
			}
			entries, err := os.ReadDir(filepath.Join(dir, "m"))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name() != "obj" {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Fatalf("folder holds %v, want only obj (temp file left?)", names)
			}
		})
	}
}

// TestFilePutCancel cancels a Put while it is streaming.
func TestFilePutCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{Progress: func(_ string, done, _ int64) {
		if done >= 1<<20 {
			cancel()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Put(ctx, "big", onlyReader{bytes.NewReader(make([]byte, 8<<20))}, 8<<20)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if objs, _ := s.List(context.Background(), ""); len(objs) != 0 {
		t.Fatalf("objects after cancelled put: %v", objs)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("temp file left: %v", entries[0].Name())
	}
}

func TestOpenFileURLs(t *testing.T) {
	abs := t.TempDir()
	t.Chdir(abs)
	tests := []struct {
		url, wantURL string
	}{
		{"file://" + abs + "/a", "file://" + abs + "/a"},
		{"file://rel/dir", "file://" + abs + "/rel/dir"},
		{"plain/path", "file://" + abs + "/plain/path"},
		{abs, "file://" + abs},
	}
	for _, tc := range tests {
		s, err := Open(context.Background(), tc.url, Options{})
		if err != nil {
			t.Errorf("Open(%q): %v", tc.url, err)
			continue
		}
		if s.URL() != tc.wantURL {
			t.Errorf("Open(%q).URL() = %q, want %q", tc.url, s.URL(), tc.wantURL)
		}
	}
	if err := os.WriteFile(filepath.Join(abs, "afile"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"gs://bucket", "file://afile", ""} {
		if _, err := Open(context.Background(), bad, Options{}); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
}
