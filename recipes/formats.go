package recipes

import (
	"net/url"
	"regexp"
	"strings"
)

var (
	nameRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,99}$`)
	envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// formats are the named string checks used by the pattern tag. Each returns
// an error message, or "" when the value is fine.
var formats = map[string]func(string) string{
	"name": func(s string) string {
		if !nameRe.MatchString(s) {
			return "must be lower-case letters, digits, '.', '_' or '-' (at most 100), starting with a letter or digit"
		}
		return ""
	},
	"envname": func(s string) string {
		if !envNameRe.MatchString(s) {
			return "must be the NAME of an environment variable (like OPENAI_API_KEY), not its value"
		}
		return ""
	},
	"url": func(s string) string {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "must be an http:// or https:// URL"
		}
		return ""
	},
	"storeurl": func(s string) string {
		switch {
		case strings.HasPrefix(s, "file://"):
			if len(s) == len("file://") {
				return "file:// needs a folder, e.g. file://published"
			}
		case strings.HasPrefix(s, "s3://"):
			bucket, _, _ := strings.Cut(strings.TrimPrefix(s, "s3://"), "/")
			if len(bucket) < 3 || len(bucket) > 63 || strings.ToLower(bucket) != bucket {
				return "s3:// needs a valid bucket name (3-63 lower-case characters), e.g. s3://models/distillery"
			}
		case strings.Contains(s, "://"):
			return "must start with file:// or s3://"
		}
		return ""
	},
}
