package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// rawClient talks to the test server directly, bypassing the store, to
// check what the server really holds.
func (srv *s3Server) rawClient(t *testing.T) *minio.Client {
	t.Helper()
	c, err := minio.New(strings.TrimPrefix(srv.Endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(testAccess, testSecret, ""), Region: "us-east-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestS3RoundTrip(t *testing.T) {
	srv := startS3(t)
	bucket := srv.bucket()
	s := srv.open(t, "s3://"+bucket+"/some/prefix", Options{PartSize: 5 << 20})
	ctx := context.Background()
	cases := append(roundTripCases[:len(roundTripCases):len(roundTripCases)],
		struct {
			name    string
			key     string
			data    []byte
			unknown bool
		}{"multipart 40MiB", "m/v1/model.bin", randomBytes(t, 40<<20), false},
		struct {
			name    string
			key     string
			data    []byte
			unknown bool
		}{"multipart unknown size", "m/v1/stream.bin", randomBytes(t, 12<<20), true},
	)
	for _, tc := range cases {
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
			sum := sha256Hex(tc.data)
			if obj.Key != tc.key || obj.Size != int64(len(tc.data)) || obj.SHA256 != sum {
				t.Errorf("Put = %+v, want size %d sha256 %s", obj, len(tc.data), sum)
			}
			if got := readKey(t, s, tc.key); !bytes.Equal(got, tc.data) {
				t.Errorf("Get returned %d bytes (sha256 %s), want %d", len(got), sha256Hex(got), len(tc.data))
			}
			st, err := s.Stat(ctx, tc.key)
			if err != nil || st.Size != int64(len(tc.data)) || st.SHA256 != sum {
				t.Errorf("Stat = %+v, %v; want sha256 %s from metadata", st, err, sum)
			}
			// The server stores the object under the prefix, with the
			// x-amz-meta-sha256 header.
			info, err := srv.rawClient(t).StatObject(ctx, bucket, "some/prefix/"+tc.key, minio.StatObjectOptions{})
			if err != nil {
				t.Fatalf("raw stat: %v", err)
			}
			if h := info.Metadata.Get("X-Amz-Meta-Sha256"); h != sum {
				t.Errorf("x-amz-meta-sha256 = %q, want %s", h, sum)
			}
			// Objects over one part must have gone up as multipart uploads,
			// whose ETag ends in -<number of parts>.
			if parts := (len(tc.data) + 5<<20 - 1) / (5 << 20); parts > 1 && !strings.HasSuffix(info.ETag, fmt.Sprintf("-%d", parts)) {
				t.Errorf("ETag %q: want a multipart upload of %d parts", info.ETag, parts)
			}
		})
	}
}

func TestS3ListStatMissingDelete(t *testing.T) {
	srv := startS3(t)
	bucket := srv.bucket()
	s := srv.open(t, "s3://"+bucket+"/pre", Options{})
	other := srv.open(t, "s3://"+bucket+"/other", Options{})
	ctx := context.Background()
	for _, k := range []string{"m/v1/a", "m/v1/b/c", "m/v10/a", "m/latest", "top"} {
		if _, err := s.Put(ctx, k, strings.NewReader(k), int64(len(k))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := other.Put(ctx, "m/v1/zzz", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"m/latest", "m/v1/a", "m/v1/b/c", "m/v10/a", "top"}},
		{"m/v1/", []string{"m/v1/a", "m/v1/b/c"}},
		{"m/v1", []string{"m/v1/a", "m/v1/b/c", "m/v10/a"}},
		{"nothing/", nil},
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
				t.Errorf("List(%q): %s size %d", tc.prefix, o.Key, o.Size)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("List(%q) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
	st, err := s.Stat(ctx, "m/v1/a")
	if err != nil || st.Size != 6 || st.SHA256 != sha256Hex([]byte("m/v1/a")) || st.ModTime.IsZero() {
		t.Errorf("Stat = %+v, %v", st, err)
	}
	for _, key := range []string{"nope", "m/v1/nope", "m/v1/zzz"} {
		if _, err := s.Get(ctx, key); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "NoSuchKey") {
			t.Errorf("Get(%q) err = %v, want ErrNotFound (NoSuchKey)", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Errorf("Stat(%q) err = %v, want ErrNotFound", key, err)
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Errorf("Delete(%q) = %v", key, err)
		}
	}
	if err := s.Delete(ctx, "top"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "top"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat after Delete: %v", err)
	}
	for _, k := range badKeys {
		if _, err := s.Put(ctx, k, strings.NewReader("x"), 1); err == nil || !strings.Contains(err.Error(), "invalid key") {
			t.Errorf("Put(%q) err = %v, want invalid key", k, err)
		}
	}
}

func TestS3WrongCredentials(t *testing.T) {
	srv := startS3(t)
	bucket := srv.bucket()
	srv.open(t, "s3://"+bucket, Options{})
	tests := []struct {
		name, access, secret, code string
	}{
		// AWS says InvalidAccessKeyId; versitygw says XAdminUserNotFound.
		{"unknown key id", "no-such-key-id", testSecret, "XAdminUserNotFound"},
		{"wrong secret", testAccess, "wrong-secret-value", "SignatureDoesNotMatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.setEnv(t, tc.access, tc.secret)
			_, err := Open(context.Background(), "s3://"+bucket, Options{})
			if err == nil {
				t.Fatal("Open succeeded with bad credentials")
			}
			want := "s3://" + bucket + ": access denied: the server rejected the credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (" + tc.code + ")"
			if err.Error() != want {
				t.Errorf("err = %q\nwant  %q", err, want)
			}
			if !errors.Is(err, ErrAccessDenied) {
				t.Errorf("err does not wrap ErrAccessDenied")
			}
			if strings.Contains(err.Error(), tc.secret) {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
	t.Run("no credentials", func(t *testing.T) {
		srv.setEnv(t, "", "")
		_, err := Open(context.Background(), "s3://"+bucket, Options{})
		if !errors.Is(err, ErrAccessDenied) || !strings.Contains(err.Error(), "no credentials set") {
			t.Errorf("err = %v, want access denied: no credentials set", err)
		}
	})
	t.Run("half credentials", func(t *testing.T) {
		srv.setEnv(t, testAccess, "")
		_, err := Open(context.Background(), "s3://"+bucket, Options{})
		if err == nil || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY is empty") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestS3MissingBucket(t *testing.T) {
	srv := startS3(t)
	ctx := context.Background()
	_, err := Open(ctx, "s3://nobkt/p", Options{})
	want := `s3://nobkt/p: bucket "nobkt" does not exist (set publish.create_bucket: true to create it)`
	if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, ErrBucketNotFound) {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if _, err := os.Stat(filepath.Join(srv.Dir, "nobkt")); err == nil {
		t.Fatal("bucket was created without CreateBucket")
	}
	s, err := Open(ctx, "s3://nobkt/p", Options{CreateBucket: true})
	if err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(srv.Dir, "nobkt")); err != nil || !fi.IsDir() {
		t.Fatalf("bucket folder not created: %v", err)
	}
	if _, err := s.Put(ctx, "k", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	// Opening again with CreateBucket on an existing bucket is fine.
	if _, err := Open(ctx, "s3://nobkt", Options{CreateBucket: true}); err != nil {
		t.Fatal(err)
	}
}

// TestS3PutCancel cancels a multipart Put midway: Put must report the
// cancellation, and the key must not appear.
func TestS3PutCancel(t *testing.T) {
	srv := startS3(t)
	bucket := srv.bucket()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := srv.open(t, "s3://"+bucket, Options{PartSize: 5 << 20, Progress: func(_ string, done, _ int64) {
		if done >= 7<<20 {
			cancel()
		}
	}})
	data := randomBytes(t, 20<<20)
	_, err := s.Put(ctx, "big.bin", bytes.NewReader(data), int64(len(data)))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	bg := context.Background()
	if _, err := s.Stat(bg, "big.bin"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat after cancel: %v, want ErrNotFound", err)
	}
	for u := range srv.rawClient(t).ListIncompleteUploads(bg, bucket, "big.bin", true) {
		t.Errorf("incomplete upload left behind: %+v", u)
	}
}

func TestS3URLHasNoCredentials(t *testing.T) {
	srv := startS3(t)
	bucket := srv.bucket()
	for _, url := range []string{"s3://" + bucket, "s3://" + bucket + "/a/b/"} {
		s := srv.open(t, url, Options{})
		if u := s.URL(); strings.Contains(u, testAccess) || strings.Contains(u, testSecret) || !strings.HasPrefix(u, "s3://"+bucket) {
			t.Errorf("URL() = %q", u)
		}
	}
}

func TestS3Endpoint(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		env      string
		host     string
		insecure bool
		bad      bool
	}{
		{"default", Options{}, "", "s3.amazonaws.com", false, false},
		{"env http", Options{}, "http://127.0.0.1:9000", "127.0.0.1:9000", true, false},
		{"env https", Options{Insecure: true}, "https://minio.example:9000/", "minio.example:9000", false, false},
		{"option wins", Options{Endpoint: "s3.example.com"}, "http://ignored:1", "s3.example.com", false, false},
		{"option insecure", Options{Endpoint: "s3.example.com", Insecure: true}, "", "s3.example.com", true, false},
		{"bad scheme", Options{Endpoint: "ftp://x"}, "", "", false, true},
		{"path", Options{Endpoint: "http://x/y"}, "", "", false, true},
		{"userinfo", Options{Endpoint: "http://k:s@x"}, "", "", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AWS_ENDPOINT_URL_S3", "")
			t.Setenv("AWS_ENDPOINT_URL", tc.env)
			host, insecure, err := s3Endpoint(tc.opts)
			if tc.bad {
				if err == nil {
					t.Fatalf("got %s, want error", host)
				}
				return
			}
			if err != nil || host != tc.host || insecure != tc.insecure {
				t.Fatalf("= %q, %v, %v; want %q, %v", host, insecure, err, tc.host, tc.insecure)
			}
		})
	}
}

// TestS3ErrorMapping checks the text and wrapping of mapped errors without
// a server (codes versitygw does not produce, such as ExpiredToken).
func TestS3ErrorMapping(t *testing.T) {
	s := &s3Store{bucket: "bkt", credSource: "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"}
	tests := []struct {
		code     string
		sentinel error
		text     string
	}{
		{"InvalidAccessKeyId", ErrAccessDenied, "op: access denied: the server rejected the credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (InvalidAccessKeyId)"},
		{"ExpiredToken", ErrAccessDenied, "op: access denied: the server rejected the credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (ExpiredToken)"},
		{"AccessDenied", ErrAccessDenied, `op: access denied: the credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not allowed to do this on bucket "bkt" (AccessDenied)`},
		{"NoSuchBucket", ErrBucketNotFound, `op: bucket "bkt" does not exist (NoSuchBucket)`},
		{"NoSuchKey", ErrNotFound, "op: not found (NoSuchKey)"},
		{"SlowDown", nil, "op: please slow down (SlowDown, HTTP 503)"},
	}
	for _, tc := range tests {
		orig := minio.ErrorResponse{Code: tc.code, Message: "please slow down", StatusCode: 503}
		err := s.s3Err("op", orig)
		if err.Error() != tc.text {
			t.Errorf("%s: %q, want %q", tc.code, err, tc.text)
		}
		if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
			t.Errorf("%s: does not wrap %v", tc.code, tc.sentinel)
		}
		var er minio.ErrorResponse
		if !errors.As(err, &er) || er.Code != tc.code {
			t.Errorf("%s: original error lost", tc.code)
		}
	}
	plain := errors.New("dial tcp: connection refused")
	if err := s.s3Err("op", plain); !errors.Is(err, plain) || err.Error() != "op: dial tcp: connection refused" {
		t.Errorf("non-S3 error: %v", err)
	}
}

func TestPartSizeFor(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		size       int64
		configured uint64
		want       uint64
	}{
		{-1, 16 * mib, 16 * mib},
		{0, 16 * mib, 16 * mib},
		{40 * mib, 5 * mib, 5 * mib},
		{10000 * 16 * mib, 16 * mib, 16 * mib}, // exactly 10000 parts
		{10000*16*mib + 1, 16 * mib, 17 * mib}, // one byte more
		{1 << 40, 16 * mib, 105 * mib},         // 1 TiB
	}
	for _, tc := range tests {
		got := partSizeFor(tc.size, tc.configured)
		if got != tc.want {
			t.Errorf("partSizeFor(%d, %d) = %d, want %d", tc.size, tc.configured, got, tc.want)
		}
		if tc.size > 0 && (uint64(tc.size)+got-1)/got > maxParts {
			t.Errorf("partSizeFor(%d) = %d needs more than %d parts", tc.size, got, maxParts)
		}
	}
}
