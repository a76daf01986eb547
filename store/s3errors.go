package store

import (
	"errors"
	"fmt"

	"github.com/minio/minio-go/v7"
)

// ErrAccessDenied is wrapped by errors where the server refused the
// credentials or the operation.
var ErrAccessDenied = errors.New("access denied")

// ErrBucketNotFound is wrapped by errors about a missing S3 bucket.
var ErrBucketNotFound = errors.New("bucket does not exist")

// readableError carries a message written for people while still
// unwrapping to the sentinel (ErrNotFound, ...) and to the original
// minio.ErrorResponse for callers that need the details.
type readableError struct {
	msg  string
	errs []error
}

func (e *readableError) Error() string   { return e.msg }
func (e *readableError) Unwrap() []error { return e.errs }

// s3Err turns a minio error into one that says what went wrong in terms
// the user can act on. op is a prefix such as "s3 put s3://b/k".
func (s *s3Store) s3Err(op string, err error) error {
	var er minio.ErrorResponse
	if !errors.As(err, &er) {
		return fmt.Errorf("%s: %w", op, err)
	}
	wrap := func(sentinel error, format string, args ...any) error {
		return &readableError{
			msg:  op + ": " + fmt.Sprintf(format, args...),
			errs: []error{sentinel, err},
		}
	}
	switch er.Code {
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
		"XAdminUserNotFound": // versitygw's answer to an unknown access key id
		if s.credSource == "" {
			return wrap(ErrAccessDenied, "access denied: no credentials set (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are empty) (%s)", er.Code)
		}
		return wrap(ErrAccessDenied, "access denied: the server rejected the credentials from %s (%s)", s.credSource, er.Code)
	case "AccessDenied", "AllAccessDisabled", "AccountProblem":
		if s.credSource == "" {
			return wrap(ErrAccessDenied, "access denied: no credentials set (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are empty) (%s)", er.Code)
		}
		return wrap(ErrAccessDenied, "access denied: the credentials from %s are not allowed to do this on bucket %q (%s)", s.credSource, s.bucket, er.Code)
	case "NoSuchBucket":
		return wrap(ErrBucketNotFound, "bucket %q does not exist (NoSuchBucket)", s.bucket)
	case "NoSuchKey", "NoSuchUpload":
		return wrap(ErrNotFound, "%s (%s)", ErrNotFound, er.Code)
	default:
		msg := er.Message
		if msg == "" {
			msg = er.Error()
		}
		return &readableError{
			msg:  fmt.Sprintf("%s: %s (%s, HTTP %d)", op, msg, er.Code, er.StatusCode),
			errs: []error{err},
		}
	}
}
