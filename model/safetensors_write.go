package model

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/distillery/distillery/store"
)

// safetensorsShardName matches HF's shard names, model-00001-of-00003.safetensors.
var safetensorsShardName = regexp.MustCompile(`^model-\d{5}-of-\d{5}\.safetensors$`)

// WriteSafetensors writes tensors to path atomically (readers see the old
// file or the complete new one), laid out as the reference writer does:
// tensors sorted by name, contiguous, compact JSON header padded with
// spaces to a multiple of 8 bytes so the data section is 8-byte aligned.
// metadata defaults to {"format":"pt"}, and "format":"pt" is added when
// missing because transformers refuses files whose metadata lacks it.
func WriteSafetensors(path string, tensors []Tensor, metadata map[string]string) error {
	sorted, err := safetensorsPrepare(tensors)
	if err != nil {
		return fmt.Errorf("safetensors %s: %w", path, err)
	}
	return safetensorsWrite(path, sorted, metadata)
}

// safetensorsPrepare validates tensors and returns them sorted by name.
func safetensorsPrepare(tensors []Tensor) ([]Tensor, error) {
	sorted := append([]Tensor{}, tensors...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for i, t := range sorted {
		switch {
		case t.Name == "":
			return nil, errors.New("tensor with an empty name")
		case t.Name == "__metadata__":
			return nil, errors.New(`tensor named "__metadata__" would clash with the metadata key`)
		case !utf8.ValidString(t.Name):
			return nil, fmt.Errorf("tensor %q: name is not valid UTF-8", t.Name)
		case i > 0 && sorted[i-1].Name == t.Name:
			return nil, fmt.Errorf("tensor %q: duplicate name", t.Name)
		}
		if _, err := t.checkData(); err != nil {
			return nil, err
		}
	}
	return sorted, nil
}

// safetensorsWrite writes already-prepared tensors.
func safetensorsWrite(path string, sorted []Tensor, metadata map[string]string) error {
	header, err := safetensorsHeaderJSON(sorted, metadata)
	if err != nil {
		return fmt.Errorf("safetensors %s: %w", path, err)
	}
	return store.WriteAtomic(path, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		var prefix [8]byte
		binary.LittleEndian.PutUint64(prefix[:], uint64(len(header)))
		bw.Write(prefix[:])
		bw.Write(header)
		for _, t := range sorted {
			if _, err := bw.Write(t.Data); err != nil {
				return err
			}
		}
		return bw.Flush()
	})
}

// safetensorsHeaderJSON builds the header: __metadata__ first, then the
// tensors in data order with their keys in the reference order (dtype,
// shape, data_offsets), padded with spaces to a multiple of 8 bytes.
func safetensorsHeaderJSON(sorted []Tensor, metadata map[string]string) ([]byte, error) {
	meta := map[string]string{"format": "pt"}
	for k, v := range metadata {
		meta[k] = v
	}
	var b bytes.Buffer
	b.WriteString(`{"__metadata__":`)
	if err := safetensorsJSON(&b, meta); err != nil {
		return nil, err
	}
	var offset int64
	for _, t := range sorted {
		b.WriteByte(',')
		if err := safetensorsJSON(&b, t.Name); err != nil {
			return nil, err
		}
		b.WriteString(`:{"dtype":`)
		safetensorsJSON(&b, string(t.DType))
		b.WriteString(`,"shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		end := offset + int64(len(t.Data))
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, offset, end)
		offset = end
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > safetensorsMaxHeader {
		return nil, fmt.Errorf("header of %d bytes exceeds the %d-byte limit", b.Len(), safetensorsMaxHeader)
	}
	return b.Bytes(), nil
}

// safetensorsJSON appends v as compact JSON without HTML escaping.
func safetensorsJSON(b *bytes.Buffer, v any) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	return nil
}

// WriteWeights writes a checkpoint's weights into dir the way HF
// transformers saves them: one model.safetensors when the data totals at
// most maxShardBytes (or maxShardBytes <= 0); otherwise shards
// model-00001-of-0000N.safetensors, filled in name order and split before a
// tensor that would push a shard past maxShardBytes (a bigger tensor gets a
// shard of its own), plus model.safetensors.index.json. Every shard gets
// metadata. Files of the other layout and stale shards are removed after
// the new files are in place, so a crash while switching layouts leaves
// the old checkpoint loadable (transformers prefers model.safetensors).
func WriteWeights(dir string, tensors []Tensor, metadata map[string]string, maxShardBytes int64) error {
	sorted, err := safetensorsPrepare(tensors)
	if err != nil {
		return fmt.Errorf("weights %s: %w", dir, err)
	}
	var total int64
	for _, t := range sorted {
		total += int64(len(t.Data))
	}
	if maxShardBytes <= 0 || total <= maxShardBytes {
		if err := safetensorsWrite(filepath.Join(dir, safetensorsSingleName), sorted, metadata); err != nil {
			return err
		}
		return safetensorsRemoveStale(dir, nil)
	}

	var shards [][]Tensor
	var cur []Tensor
	var curSize int64
	for _, t := range sorted {
		size := int64(len(t.Data))
		if size > maxShardBytes {
			shards = append(shards, []Tensor{t})
			continue
		}
		if curSize+size > maxShardBytes && len(cur) > 0 {
			shards = append(shards, cur)
			cur, curSize = nil, 0
		}
		cur = append(cur, t)
		curSize += size
	}
	if len(cur) > 0 {
		shards = append(shards, cur)
	}

	keep := map[string]bool{}
	weightMap := map[string]string{}
	for i, shard := range shards {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		keep[name] = true
		if err := safetensorsWrite(filepath.Join(dir, name), shard, metadata); err != nil {
			return err
		}
		for _, t := range shard {
			weightMap[t.Name] = name
		}
	}
	// transformers writes json.dumps(index, indent=2, sort_keys=True) + "\n".
	index := struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{map[string]int64{"total_size": total}, weightMap}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(index); err != nil {
		return fmt.Errorf("weights %s: %w", dir, err)
	}
	if err := store.WriteFileAtomic(filepath.Join(dir, safetensorsIndexName), b.Bytes()); err != nil {
		return err
	}
	return safetensorsRemoveStale(dir, keep)
}

// safetensorsRemoveStale removes the layout not just written: with keep ==
// nil (single file written) the index and all shards, otherwise
// model.safetensors and shards not in keep.
func safetensorsRemoveStale(dir string, keep map[string]bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("weights %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		stale := false
		switch {
		case keep == nil:
			stale = name == safetensorsIndexName || safetensorsShardName.MatchString(name)
		default:
			stale = name == safetensorsSingleName || (safetensorsShardName.MatchString(name) && !keep[name])
		}
		if stale && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("weights %s: removing stale %s: %w", dir, name, err)
			}
		}
	}
	return nil
}
