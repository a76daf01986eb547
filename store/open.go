package store

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// Options configures Open. Zero values mean "use the default"; the S3
// fields are ignored by the file store.
type Options struct {
	// Endpoint is the S3 host[:port], optionally with an http:// or
	// https:// scheme, which then decides Insecure. Default:
	// $AWS_ENDPOINT_URL_S3, then $AWS_ENDPOINT_URL, then s3.amazonaws.com.
	Endpoint string
	// Region defaults to $AWS_REGION, then $AWS_DEFAULT_REGION; when all
	// are empty the client asks the server for the bucket's region.
	Region string
	// PathStyle addresses buckets as endpoint/bucket rather than
	// bucket.endpoint (needed by most self-hosted servers behind DNS names).
	PathStyle bool
	// Insecure talks plain http instead of https.
	Insecure bool
	// CreateBucket creates a missing bucket on Open instead of failing.
	CreateBucket bool
	// PartSize is the multipart part size in bytes (default 16 MiB,
	// minimum 5 MiB, S3's own lower limit).
	PartSize uint64
	// Progress, when set, is called as Put transfers bytes, with the key.
	Progress ProgressFunc
}

const (
	defaultPartSize = 16 << 20
	minPartSize     = 5 << 20
)

// Open returns the store at url:
//
//	file:///abs/dir, file://rel/dir, or a plain path: a local folder
//	s3://bucket[/prefix]: an S3-compatible bucket (credentials from
//	  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)
//
// For S3 it checks that the bucket is reachable with the credentials, so
// that a typo or a bad key fails here with a readable error rather than
// after a long upload.
func Open(ctx context.Context, url string, opts Options) (Store, error) {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return openFile(url, opts)
	}
	switch strings.ToLower(scheme) {
	case "file":
		return openFile(rest, opts)
	case "s3":
		return openS3(ctx, rest, opts)
	default:
		return nil, fmt.Errorf("open store %s: unsupported scheme %q (want file:// or s3://)", url, scheme)
	}
}

// PutFile uploads the local file path to key, passing its size so that the
// store can pick single-part or multipart upload up front.
func PutFile(ctx context.Context, s Store, key, path string) (Object, error) {
	f, err := os.Open(path)
	if err != nil {
		return Object{}, fmt.Errorf("put %s: %w", key, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Object{}, fmt.Errorf("put %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		return Object{}, fmt.Errorf("put %s: %s is not a regular file", key, path)
	}
	return s.Put(ctx, key, f, fi.Size())
}
