package recipes

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
)

// Redacted returns the recipe as canonical JSON with every value that came
// from a secret-looking environment variable replaced by a marker naming the
// variable. This is the only form of a recipe written to run folders or logs.
func (r *Recipe) Redacted() []byte {
	raw, err := json.Marshal(r)
	if err != nil {
		panic("recipes: marshal recipe: " + err.Error()) // plain data: cannot fail
	}
	if len(r.secrets) == 0 {
		return raw
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		panic("recipes: unmarshal recipe: " + err.Error())
	}
	for path, name := range r.secrets {
		setPath(tree, path, "[redacted: $"+name+"]")
	}
	out, err := json.Marshal(tree)
	if err != nil {
		panic("recipes: marshal recipe: " + err.Error())
	}
	return out
}

// Hash identifies a recipe's content (after defaults and overrides).
func (r *Recipe) Hash() string {
	sum := sha256.Sum256(r.Redacted())
	return hex.EncodeToString(sum[:])
}

// Section returns the redacted JSON of one top-level section, for stage
// cache keys.
func (r *Recipe) Section(name string) json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(r.Redacted(), &m); err != nil {
		panic("recipes: " + err.Error())
	}
	return m[name]
}

// setPath sets a value in a decoded JSON tree by a path such as
// "data.source[0].path".
func setPath(tree any, path, value string) {
	segs := strings.Split(strings.ReplaceAll(path, "[", ".["), ".")
	cur := tree
	for i, seg := range segs {
		last := i == len(segs)-1
		if strings.HasPrefix(seg, "[") {
			idx, _ := strconv.Atoi(strings.Trim(seg, "[]"))
			list, ok := cur.([]any)
			if !ok || idx >= len(list) {
				return
			}
			if last {
				list[idx] = value
				return
			}
			cur = list[idx]
			continue
		}
		m, ok := cur.(map[string]any)
		if !ok {
			return
		}
		if last {
			m[seg] = value
			return
		}
		cur = m[seg]
	}
}
