package store

import (
	"fmt"
	"regexp"
	"strings"
)

// tempName matches the temp files WriteAtomic creates (".NAME.tmp-123");
// the file store hides them from List and refuses them as key segments so
// that a half-written file can never be mistaken for an object.
var tempName = regexp.MustCompile(`^\..+\.tmp-[0-9]+$`)

// ValidateKey reports whether key is a usable object key: '/'-separated,
// relative, without empty, "." or ".." segments, backslashes or NUL bytes.
// The same rules apply to every store so that a release published to one
// store can be mirrored to another.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("invalid key %q: empty", key)
	case strings.HasPrefix(key, "/"):
		return fmt.Errorf("invalid key %q: must not start with '/'", key)
	case strings.ContainsAny(key, "\\\x00"):
		return fmt.Errorf("invalid key %q: must not contain '\\' or NUL", key)
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch {
		case seg == "":
			return fmt.Errorf("invalid key %q: empty path segment", key)
		case seg == "." || seg == "..":
			return fmt.Errorf("invalid key %q: %q segment not allowed", key, seg)
		case tempName.MatchString(seg):
			return fmt.Errorf("invalid key %q: segment %q looks like a temp file", key, seg)
		}
	}
	return nil
}

// validatePrefix checks a List prefix: like a key, but it may be empty and
// may end with '/'.
func validatePrefix(prefix string) error {
	p := strings.TrimSuffix(prefix, "/")
	if p == "" {
		if prefix != "" {
			return fmt.Errorf("invalid prefix %q: must not start with '/'", prefix)
		}
		return nil
	}
	if err := ValidateKey(p); err != nil {
		return fmt.Errorf("invalid prefix %q: %w", prefix, err)
	}
	return nil
}
