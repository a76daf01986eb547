package recipes

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

// expandEnv replaces ${VAR} and ${VAR:-default} in every scalar value ($$
// is a literal $). An unset variable without a default is an error, so a
// recipe never runs with a silently empty setting. Plain scalars are
// re-typed after expansion, so `lr: ${LR}` is a number when LR=1e-4.
func (d *decoder) expandEnv(n *yaml.Node, lookup func(string) (string, bool)) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			d.expandEnv(c, lookup)
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			d.expandEnv(n.Content[i], lookup)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "$") {
			return
		}
		var vars []string
		out := envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			if m == "$$" {
				return "$"
			}
			sub := envRef.FindStringSubmatch(m)
			name := sub[1]
			vars = append(vars, name)
			if v, ok := lookup(name); ok && v != "" {
				return v
			}
			if strings.Contains(m, ":-") {
				return sub[2]
			}
			d.errAt(n, "", fmt.Sprintf("environment variable %s is not set", name), "set it, or write ${"+name+":-default}")
			return ""
		})
		if out == n.Value && len(vars) == 0 {
			return
		}
		n.Value = out
		d.envVars[n] = vars
		if n.Style == 0 && n.Tag == "!!str" {
			n.Tag = "" // let YAML resolve the type of the expanded text
		}
	}
}

func osLookup(name string) (string, bool) { return os.LookupEnv(name) }

// isSecretName reports whether an environment variable's name suggests a
// secret, so its value must never be written to a run folder or a log.
func isSecretName(name string) bool {
	u := strings.ToUpper(name)
	for _, w := range []string{"KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH"} {
		if strings.Contains(u, w) {
			return true
		}
	}
	return false
}

var secretShape = regexp.MustCompile(`^(sk-|sk-ant-|sk-proj-|AKIA|ASIA|ghp_|hf_|xox[bap]-)[A-Za-z0-9_\-]{16,}$`)

// looksLikeSecret reports whether a literal value has the shape of a
// well-known API key or access key.
func looksLikeSecret(s string) bool { return secretShape.MatchString(strings.TrimSpace(s)) }
