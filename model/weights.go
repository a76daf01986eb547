package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ErrMissingTensor is wrapped by errors for a tensor name that a file or
// checkpoint does not contain; test for it with errors.Is.
var ErrMissingTensor = errors.New("missing tensor")

// The file names HF transformers uses for a checkpoint's weights.
const (
	safetensorsSingleName = "model.safetensors"
	safetensorsIndexName  = "model.safetensors.index.json"
)

// Weights is a checkpoint's weights: one model.safetensors, or shards
// listed by model.safetensors.index.json. Each file is memory-mapped once;
// Get returns zero-copy views valid until Close.
type Weights struct {
	path     string // what OpenWeights was given, for errors
	files    []*SafetensorsFile
	where    map[string]*SafetensorsFile
	names    []string
	metadata map[string]string
}

// safetensorsIndex is model.safetensors.index.json. Metadata values are
// raw because HF writes total_size as a number.
type safetensorsIndex struct {
	Metadata  map[string]json.RawMessage `json:"metadata"`
	WeightMap map[string]string          `json:"weight_map"`
}

// OpenWeights opens a checkpoint folder's weights. Like HF transformers it
// prefers model.safetensors and otherwise reads model.safetensors.index.json
// and its shards, checking that every tensor the index names is in its
// shard. dir may also be the path of a .safetensors file or of an index.
func OpenWeights(dir string) (*Weights, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("weights %s: %w", dir, err)
	}
	if !st.IsDir() {
		if strings.HasSuffix(dir, ".json") {
			return openShardedWeights(dir)
		}
		return openSingleWeights(dir)
	}
	single := filepath.Join(dir, safetensorsSingleName)
	if _, err := os.Stat(single); err == nil {
		return openSingleWeights(single)
	}
	index := filepath.Join(dir, safetensorsIndexName)
	if _, err := os.Stat(index); err == nil {
		return openShardedWeights(index)
	}
	return nil, fmt.Errorf("weights %s: neither %s nor %s found", dir, safetensorsSingleName, safetensorsIndexName)
}

func openSingleWeights(path string) (*Weights, error) {
	f, err := OpenSafetensors(path)
	if err != nil {
		return nil, err
	}
	w := &Weights{path: path, files: []*SafetensorsFile{f}, where: map[string]*SafetensorsFile{}, metadata: map[string]string{}}
	for name := range f.Header.Tensors {
		w.where[name] = f
	}
	for k, v := range f.Header.Metadata {
		w.metadata[k] = v
	}
	w.sortNames()
	return w, nil
}

func openShardedWeights(indexPath string) (_ *Weights, err error) {
	raw, err := os.ReadFile(indexPath)
	if err != nil {
		return nil, fmt.Errorf("safetensors index %s: %w", indexPath, err)
	}
	var idx safetensorsIndex
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("safetensors index %s: %w", indexPath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("safetensors index %s: weight_map is missing or empty", indexPath)
	}
	w := &Weights{path: indexPath, where: map[string]*SafetensorsFile{}, metadata: map[string]string{}}
	defer func() { // close the shards opened before an error
		if err != nil {
			w.Close()
		}
	}()
	dir := filepath.Dir(indexPath)
	shards := map[string]*SafetensorsFile{}
	for _, name := range safetensorsSortedKeys(idx.WeightMap) {
		shard := idx.WeightMap[name]
		f, ok := shards[shard]
		if !ok {
			// Shard names come from a file; keep them inside the folder.
			if !filepath.IsLocal(shard) {
				return nil, fmt.Errorf("safetensors index %s: tensor %q: shard %q is not a path inside %s", indexPath, name, shard, dir)
			}
			f, err = OpenSafetensors(filepath.Join(dir, shard))
			if err != nil {
				return nil, fmt.Errorf("safetensors index %s: tensor %q: %w", indexPath, name, err)
			}
			shards[shard] = f
			w.files = append(w.files, f)
		}
		if _, ok := f.Header.Tensors[name]; !ok {
			return nil, fmt.Errorf("safetensors index %s: tensor %q: not in its shard %s: %w", indexPath, name, f.Path, ErrMissingTensor)
		}
		w.where[name] = f
	}
	// Shard __metadata__ first (first shard wins), then the index's own
	// metadata, whose non-string values (total_size) are kept as JSON text.
	sort.Slice(w.files, func(i, j int) bool { return w.files[i].Path < w.files[j].Path })
	for _, f := range w.files {
		for k, v := range f.Header.Metadata {
			if _, ok := w.metadata[k]; !ok {
				w.metadata[k] = v
			}
		}
	}
	for k, v := range idx.Metadata {
		var s string
		if json.Unmarshal(v, &s) != nil {
			s = string(bytes.TrimSpace(v))
		}
		w.metadata[k] = s
	}
	w.sortNames()
	return w, nil
}

func (w *Weights) sortNames() {
	w.names = safetensorsSortedKeys(w.where)
}

func safetensorsSortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Names lists the tensor names, sorted.
func (w *Weights) Names() []string { return append([]string{}, w.names...) }

// Has reports whether the checkpoint has a tensor.
func (w *Weights) Has(name string) bool { _, ok := w.where[name]; return ok }

// Get returns a tensor as a zero-copy view valid until Close. A name the
// checkpoint lacks gives an error wrapping ErrMissingTensor.
func (w *Weights) Get(name string) (Tensor, error) {
	f, ok := w.where[name]
	if !ok {
		return Tensor{}, fmt.Errorf("weights %s: tensor %q: %w", w.path, name, ErrMissingTensor)
	}
	return f.Tensor(name)
}

// Info returns a tensor's dtype, shape and offsets within its file
// without touching its data.
func (w *Weights) Info(name string) (TensorInfo, bool) {
	f, ok := w.where[name]
	if !ok {
		return TensorInfo{}, false
	}
	info := f.Header.Tensors[name]
	info.Shape = append([]int{}, info.Shape...)
	return info, true
}

// Metadata is the file's __metadata__; for a sharded checkpoint, the
// shards' __metadata__ overlaid with the index's metadata (which includes
// total_size). The map is a copy.
func (w *Weights) Metadata() map[string]string {
	m := make(map[string]string, len(w.metadata))
	for k, v := range w.metadata {
		m[k] = v
	}
	return m
}

// Close unmaps every file; tensors from Get must not be used afterwards.
func (w *Weights) Close() error {
	var errs []error
	for _, f := range w.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
