package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// s3Store keeps objects in an S3-compatible bucket under an optional
// prefix. Object data is never visible half-written: single PUTs are
// atomic on S3 and multipart uploads only appear once completed.
type s3Store struct {
	client     *minio.Client
	bucket     string
	prefix     string // "" or "a/b" (no trailing slash)
	partSize   uint64
	progress   ProgressFunc
	credSource string // which env vars the credentials came from; "" = anonymous
	endpoint   string // host[:port], for messages
}

// metaSHA256 is the user metadata key (x-amz-meta-sha256) holding the hex
// sha256 of an object's content.
const metaSHA256 = "sha256"

// s3Endpoint resolves the endpoint and whether it is plain http.
func s3Endpoint(opts Options) (host string, insecure bool, err error) {
	ep, insecure := opts.Endpoint, opts.Insecure
	for _, env := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
		if ep == "" {
			ep = os.Getenv(env)
		}
	}
	if ep == "" {
		return "s3.amazonaws.com", insecure, nil
	}
	if !strings.Contains(ep, "://") {
		return strings.TrimSuffix(ep, "/"), insecure, nil
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", false, fmt.Errorf("endpoint %q: %w", ep, err)
	}
	switch u.Scheme {
	case "http":
		insecure = true
	case "https":
		insecure = false
	default:
		return "", false, fmt.Errorf("endpoint %q: scheme must be http or https", ep)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil {
		return "", false, fmt.Errorf("endpoint %q: want scheme://host[:port] only", ep)
	}
	return u.Host, insecure, nil
}

// s3Credentials reads the standard AWS env vars. It returns the source
// description used in error messages (never the secret itself).
func s3Credentials() (*credentials.Credentials, string, error) {
	id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	token := os.Getenv("AWS_SESSION_TOKEN")
	switch {
	case id == "" && secret == "":
		return credentials.NewStaticV4("", "", ""), "", nil
	case id == "":
		return nil, "", errors.New("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is empty")
	case secret == "":
		return nil, "", errors.New("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is empty")
	}
	src := "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
	if token != "" {
		src += "/AWS_SESSION_TOKEN"
	}
	return credentials.NewStaticV4(id, secret, token), src, nil
}

func openS3(ctx context.Context, rest string, opts Options) (*s3Store, error) {
	bucket, prefix, _ := strings.Cut(rest, "/")
	prefix = strings.Trim(prefix, "/")
	where := "s3://" + rest
	if bucket == "" {
		return nil, fmt.Errorf("open store %s: missing bucket name", where)
	}
	if prefix != "" {
		if err := ValidateKey(prefix); err != nil {
			return nil, fmt.Errorf("open store %s: prefix: %w", where, err)
		}
	}
	s := &s3Store{bucket: bucket, prefix: prefix, partSize: opts.PartSize, progress: opts.Progress}
	where = s.URL()
	if s.partSize == 0 {
		s.partSize = defaultPartSize
	} else if s.partSize < minPartSize {
		return nil, fmt.Errorf("%s: part size %d is below the S3 minimum of 5 MiB", where, s.partSize)
	}
	host, insecure, err := s3Endpoint(opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	creds, src, err := s3Credentials()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	s.credSource, s.endpoint = src, host
	region := opts.Region
	for _, env := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if region == "" {
			region = os.Getenv(env)
		}
	}
	lookup := minio.BucketLookupAuto
	if opts.PathStyle {
		lookup = minio.BucketLookupPath
	}
	s.client, err = minio.New(host, &minio.Options{
		Creds:        creds,
		Secure:       !insecure,
		Region:       region,
		BucketLookup: lookup,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if err := s.checkBucket(ctx, opts.CreateBucket, region); err != nil {
		return nil, err
	}
	return s, nil
}

// checkBucket lists at most one key, which (unlike HEAD) returns an error
// body, so bad credentials are told apart from a missing bucket.
func (s *s3Store) checkBucket(ctx context.Context, create bool, region string) error {
	err := s.probe(ctx)
	if err == nil || !errors.Is(err, ErrBucketNotFound) {
		return err
	}
	if !create {
		return fmt.Errorf("%s: bucket %q does not exist (set publish.create_bucket: true to create it): %w",
			s.URL(), s.bucket, ErrBucketNotFound)
	}
	if err := s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region}); err != nil {
		if code := minio.ToErrorResponse(err).Code; code != "BucketAlreadyOwnedByYou" && code != "BucketAlreadyExists" {
			return s.s3Err(fmt.Sprintf("%s: create bucket", s.URL()), err)
		}
	}
	return s.probe(ctx)
}

func (s *s3Store) probe(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.full(""), MaxKeys: 1}) {
		if obj.Err != nil {
			var er minio.ErrorResponse
			if !errors.As(obj.Err, &er) {
				return fmt.Errorf("%s: cannot reach S3 endpoint %s: %w", s.URL(), s.endpoint, obj.Err)
			}
			return s.s3Err(s.URL(), obj.Err)
		}
		break
	}
	return nil
}

func (s *s3Store) URL() string {
	if s.prefix == "" {
		return "s3://" + s.bucket
	}
	return "s3://" + s.bucket + "/" + s.prefix
}

// full maps a store key (or prefix) to the bucket's object name.
func (s *s3Store) full(key string) string {
	if s.prefix == "" {
		return key
	}
	return s.prefix + "/" + key
}

func (s *s3Store) where(key string) string { return s.URL() + "/" + key }

// Put uploads r to key with its sha256 as x-amz-meta-sha256. Metadata has
// to be sent before the data, so the hash is computed first: by reading a
// seekable r twice, or else by spooling r into a temp file while hashing.
// The upload hashes the data again as it streams (catching a source that
// changed underneath), and the object is then read back and hashed.
func (s *s3Store) Put(ctx context.Context, key string, r io.Reader, size int64) (Object, error) {
	op := "s3 put " + s.where(key)
	if err := ValidateKey(key); err != nil {
		return Object{}, fmt.Errorf("s3 put: %w", err)
	}
	var sum string
	var n int64
	if rs, ok := r.(io.ReadSeeker); ok {
		start, err := rs.Seek(0, io.SeekCurrent)
		if err != nil {
			return Object{}, fmt.Errorf("%s: %w", op, err)
		}
		if sum, n, err = hashAll(ctx, rs); err != nil {
			return Object{}, fmt.Errorf("%s: hash: %w", op, err)
		}
		if _, err := rs.Seek(start, io.SeekStart); err != nil {
			return Object{}, fmt.Errorf("%s: %w", op, err)
		}
	} else {
		f, err := os.CreateTemp("", "distillery-s3-put-*")
		if err != nil {
			return Object{}, fmt.Errorf("%s: spool: %w", op, err)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		hr := newHashReader(ctx, r, key, size, nil)
		if _, err := io.Copy(f, hr); err != nil {
			return Object{}, fmt.Errorf("%s: spool: %w", op, err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return Object{}, fmt.Errorf("%s: spool: %w", op, err)
		}
		r, sum, n = f, hr.Sum(), hr.n
	}
	if size >= 0 && n != size {
		return Object{}, fmt.Errorf("%s: size mismatch: read %d bytes, expected %d", op, n, size)
	}
	return s.putHashed(ctx, key, r, n, sum)
}

// putHashed uploads exactly size bytes of r, whose sha256 is sum.
func (s *s3Store) putHashed(ctx context.Context, key string, r io.Reader, size int64, sum string) (Object, error) {
	op := "s3 put " + s.where(key)
	hr := newHashReader(ctx, io.LimitReader(r, size), key, size, s.progress)
	info, err := s.client.PutObject(ctx, s.bucket, s.full(key), hr, size, minio.PutObjectOptions{
		UserMetadata: map[string]string{metaSHA256: sum},
		ContentType:  "application/octet-stream",
		PartSize:     partSizeFor(size, s.partSize),
	})
	if err != nil {
		s.abortUploads(ctx, key)
		if ctx.Err() != nil {
			return Object{}, fmt.Errorf("%s: %w", op, ctx.Err())
		}
		return Object{}, s.s3Err(op, err)
	}
	bad := func(format string, args ...any) (Object, error) {
		// Do not leave an object that disagrees with its metadata.
		_ = s.client.RemoveObject(context.WithoutCancel(ctx), s.bucket, s.full(key), minio.RemoveObjectOptions{})
		return Object{}, fmt.Errorf("%s: "+format, append([]any{op}, args...)...)
	}
	if hr.n != size || info.Size != size {
		return bad("uploaded %d bytes (server: %d), expected %d", hr.n, info.Size, size)
	}
	if got := hr.Sum(); got != sum {
		return bad("source changed during upload: sha256 %s, expected %s", got, sum)
	}
	obj, err := s.verify(ctx, key)
	if err != nil {
		return Object{}, err
	}
	if obj.SHA256 != sum || obj.Size != size {
		return bad("verify: stored object has sha256 %s and %d bytes, expected %s and %d", obj.SHA256, obj.Size, sum, size)
	}
	return obj, nil
}

// maxParts is S3's limit on the number of parts of one multipart upload.
const maxParts = 10000

// partSizeFor returns the configured part size, raised (to a whole MiB)
// when size would otherwise need more than maxParts parts.
func partSizeFor(size int64, configured uint64) uint64 {
	if size <= 0 {
		return configured
	}
	need := (uint64(size) + maxParts - 1) / maxParts
	if need <= configured {
		return configured
	}
	return (need + 1<<20 - 1) &^ (1<<20 - 1)
}

// abortUploads aborts unfinished multipart uploads of key, best effort:
// minio-go leaves them behind on failure, and they cost storage (never
// visibility) until aborted. It runs even when ctx is cancelled.
func (s *s3Store) abortUploads(ctx context.Context, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_ = s.client.RemoveIncompleteUpload(ctx, s.bucket, s.full(key))
}

// verify reads key back, hashes it and checks the stored sha256 metadata.
// The returned Object carries the hash of what was actually read.
func (s *s3Store) verify(ctx context.Context, key string) (Object, error) {
	op := "s3 verify " + s.where(key)
	obj, err := s.client.GetObject(ctx, s.bucket, s.full(key), minio.GetObjectOptions{})
	if err != nil {
		return Object{}, s.s3Err(op, err)
	}
	defer obj.Close()
	info, err := obj.Stat()
	if err != nil {
		return Object{}, s.s3Err(op, err)
	}
	got, n, err := hashAll(ctx, obj)
	if err != nil {
		return Object{}, s.s3Err(op, err)
	}
	if meta := userMeta(info, metaSHA256); meta != got {
		return Object{}, fmt.Errorf("%s: content sha256 %s does not match x-amz-meta-sha256 %q", op, got, meta)
	}
	return Object{Key: key, Size: n, SHA256: got, ModTime: info.LastModified.UTC()}, nil
}

// userMeta looks up x-amz-meta-<name>; servers differ in the case they
// return header names in.
func userMeta(info minio.ObjectInfo, name string) string {
	for k, v := range info.UserMetadata {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

func (s *s3Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	op := "s3 get " + s.where(key)
	if err := ValidateKey(key); err != nil {
		return nil, fmt.Errorf("s3 get: %w", err)
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.full(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, s.s3Err(op, err)
	}
	// GetObject is lazy; Stat issues the request so errors surface here.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, s.s3Err(op, err)
	}
	return obj, nil
}

func (s *s3Store) Stat(ctx context.Context, key string) (Object, error) {
	op := "s3 stat " + s.where(key)
	if err := ValidateKey(key); err != nil {
		return Object{}, fmt.Errorf("s3 stat: %w", err)
	}
	info, err := s.client.StatObject(ctx, s.bucket, s.full(key), minio.StatObjectOptions{})
	if err != nil {
		return Object{}, s.s3Err(op, err)
	}
	return Object{Key: key, Size: info.Size, SHA256: userMeta(info, metaSHA256), ModTime: info.LastModified.UTC()}, nil
}

// List returns the objects under prefix. Listing does not return user
// metadata, so SHA256 is empty; use Stat for it.
func (s *s3Store) List(ctx context.Context, prefix string) ([]Object, error) {
	op := fmt.Sprintf("s3 list %s/%s", s.URL(), prefix)
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("s3 list: %w", err)
	}
	var out []Object
	base := s.full("")
	for info := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.full(prefix), Recursive: true}) {
		if info.Err != nil {
			return nil, s.s3Err(op, info.Err)
		}
		key := strings.TrimPrefix(info.Key, base)
		if key == "" || strings.HasSuffix(key, "/") {
			continue // folder marker
		}
		out = append(out, Object{Key: key, Size: info.Size, ModTime: info.LastModified.UTC()})
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (s *s3Store) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("s3 delete: %w", err)
	}
	err := s.client.RemoveObject(ctx, s.bucket, s.full(key), minio.RemoveObjectOptions{})
	if err != nil && !errors.Is(s.s3Err("", err), ErrNotFound) {
		return s.s3Err("s3 delete "+s.where(key), err)
	}
	return nil
}
