package store

import (
	"fmt"
	"regexp"
	"strings"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// ValidateName checks a release name or version: one path segment of
// letters, digits and ". _ + -", not starting with a punctuation mark and
// without "..", so it can never escape its folder.
func ValidateName(kind, s string) error {
	if !nameRE.MatchString(s) || strings.Contains(s, "..") {
		return fmt.Errorf("invalid %s %q: want 1-128 of [A-Za-z0-9._+-], starting with a letter or digit, no \"..\"", kind, s)
	}
	return nil
}

func validateRelease(name, version string) error {
	if err := ValidateName("release name", name); err != nil {
		return err
	}
	if err := ValidateName("version", version); err != nil {
		return err
	}
	if version == latestKey {
		return fmt.Errorf("invalid version %q: reserved for the latest pointer", version)
	}
	return nil
}

// ReleaseKey is the key of a version's release.json.
func ReleaseKey(name, version string) string { return name + "/" + version + "/" + releaseFile }

// LatestKey is the key of a release name's latest pointer.
func LatestKey(name string) string { return name + "/" + latestKey }

// checkFileNames rejects names that are invalid keys, collide with
// release.json, repeat, or are both a file and a folder ("a" and "a/b").
func checkFileNames(names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		if err := ValidateKey(n); err != nil {
			return err
		}
		if n == releaseFile {
			return fmt.Errorf("file name %q is reserved", n)
		}
		if seen[n] {
			return fmt.Errorf("file name %q given twice", n)
		}
		seen[n] = true
	}
	for _, n := range names {
		for dir := n; strings.Contains(dir, "/"); {
			dir = dir[:strings.LastIndex(dir, "/")]
			if seen[dir] {
				return fmt.Errorf("file name %q is also used as a folder by %q", dir, n)
			}
		}
	}
	return nil
}

// naturalLess orders strings with digit runs compared as numbers
// ("v2" < "v10"); ties such as "1.01" and "1.1" fall back to byte order.
func naturalLess(a, b string) bool {
	x, y := a, b
	for x != "" && y != "" {
		cx, rx := chunk(x)
		cy, ry := chunk(y)
		if cx != cy {
			if isDigit(cx[0]) && isDigit(cy[0]) {
				nx, ny := strings.TrimLeft(cx, "0"), strings.TrimLeft(cy, "0")
				if len(nx) != len(ny) {
					return len(nx) < len(ny)
				}
				if nx != ny {
					return nx < ny
				}
			} else {
				return cx < cy
			}
		}
		x, y = rx, ry
	}
	if x != "" || y != "" {
		return x == ""
	}
	return a < b
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// chunk splits off the leading run of digits or of non-digits.
func chunk(s string) (string, string) {
	d := isDigit(s[0])
	i := 1
	for i < len(s) && isDigit(s[i]) == d {
		i++
	}
	return s[:i], s[i:]
}
