package model

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
)

// safetensorsMaxHeader caps the JSON header length, as the reference
// implementation does, so a corrupt length prefix cannot make us allocate
// or parse gigabytes.
const safetensorsMaxHeader = 100_000_000

// TensorInfo is one tensor's header entry. Begin and End are byte offsets
// relative to the start of the data section (Header.DataStart).
type TensorInfo struct {
	DType      DType
	Shape      []int
	Begin, End int64
}

// Header is a parsed and validated safetensors header.
type Header struct {
	Tensors map[string]TensorInfo
	// Names lists the tensors in file order (by Begin, then End, then name).
	Names    []string
	Metadata map[string]string
	// DataStart is the file offset of the data section: 8 + header length.
	DataStart int64
}

// safetensorsEntry is a tensor's JSON header entry. Pointers tell a
// missing field from a zero one.
type safetensorsEntry struct {
	DType   *string  `json:"dtype"`
	Shape   *[]int64 `json:"shape"`
	Offsets *[]int64 `json:"data_offsets"`
}

// ParseHeader parses and validates a safetensors header. data holds at
// least the 8-byte little-endian length prefix and the JSON header that
// follows it (it may be the whole file); fileSize is the size of the whole
// file, which bounds the data section. Every tensor must have a known
// dtype, a non-negative shape, End-Begin equal to its byte size and lie
// inside the data section without overlapping another tensor; gaps between
// tensors are allowed. Errors name the offending tensor.
func ParseHeader(data []byte, fileSize int64) (*Header, error) {
	if fileSize < 8 || len(data) < 8 {
		return nil, fmt.Errorf("safetensors header: file of %d bytes is too small for the 8-byte header length", min(fileSize, int64(len(data))))
	}
	n := binary.LittleEndian.Uint64(data[:8])
	if n > safetensorsMaxHeader {
		return nil, fmt.Errorf("safetensors header: length %d exceeds the %d-byte limit (corrupt length prefix?)", n, safetensorsMaxHeader)
	}
	dataStart := 8 + int64(n)
	if dataStart > fileSize {
		return nil, fmt.Errorf("safetensors header: length %d runs past the end of the %d-byte file (truncated file?)", n, fileSize)
	}
	if int64(len(data)) < dataStart {
		return nil, fmt.Errorf("safetensors header: length %d but only %d header bytes given", n, len(data)-8)
	}
	dataSize := fileSize - dataStart
	h := &Header{Tensors: map[string]TensorInfo{}, Metadata: map[string]string{}, DataStart: dataStart}

	raw, err := safetensorsObject(data[8:dataStart])
	if err != nil {
		return nil, fmt.Errorf("safetensors header: %w", err)
	}
	for _, kv := range raw {
		name, value := kv.key, kv.value
		if name == "__metadata__" {
			if err := safetensorsMetadata(value, h.Metadata); err != nil {
				return nil, fmt.Errorf("safetensors header: __metadata__: %w", err)
			}
			continue
		}
		info, err := safetensorsParseEntry(value, dataSize)
		if err != nil {
			return nil, fmt.Errorf("safetensors header: tensor %q: %w", name, err)
		}
		h.Tensors[name] = info
		h.Names = append(h.Names, name)
	}
	sort.Slice(h.Names, func(i, j int) bool {
		a, b := h.Tensors[h.Names[i]], h.Tensors[h.Names[j]]
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		if a.End != b.End {
			return a.End < b.End
		}
		return h.Names[i] < h.Names[j]
	})
	// Sorted by Begin, a non-empty tensor overlaps an earlier one exactly
	// when it starts before the furthest End seen so far.
	var maxEnd int64
	var maxName string
	for _, name := range h.Names {
		info := h.Tensors[name]
		if info.Begin == info.End {
			continue
		}
		if info.Begin < maxEnd {
			return nil, fmt.Errorf("safetensors header: tensor %q: bytes [%d,%d) overlap tensor %q ending at %d", name, info.Begin, info.End, maxName, maxEnd)
		}
		maxEnd, maxName = info.End, name
	}
	return h, nil
}

type safetensorsKV struct {
	key   string
	value json.RawMessage
}

// safetensorsObject splits a JSON object into its members, rejecting
// anything else, duplicate keys (which would make a tensor ambiguous) and
// trailing data. Trailing spaces are the padding writers add.
func safetensorsObject(js []byte) ([]safetensorsKV, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not a JSON object (starts with %v)", tok)
	}
	var out []safetensorsKV
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("invalid JSON: object key %v", tok)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("invalid JSON at %q: %w", key, err)
		}
		if seen[key] {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		out = append(out, safetensorsKV{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: trailing data after the header object")
	}
	return out, nil
}

// safetensorsMetadata decodes "__metadata__", which must be an object of
// strings (or null).
func safetensorsMetadata(raw json.RawMessage, into map[string]string) error {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	if err := json.Unmarshal(raw, &into); err != nil {
		return fmt.Errorf("must be an object of strings: %w", err)
	}
	return nil
}

// safetensorsParseEntry validates one tensor entry against the data
// section size.
func safetensorsParseEntry(raw json.RawMessage, dataSize int64) (TensorInfo, error) {
	var e safetensorsEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		return TensorInfo{}, fmt.Errorf("entry must be an object with dtype, shape and data_offsets: %w", err)
	}
	switch {
	case e.DType == nil:
		return TensorInfo{}, errors.New("missing dtype")
	case e.Shape == nil:
		return TensorInfo{}, errors.New("missing shape")
	case e.Offsets == nil:
		return TensorInfo{}, errors.New("missing data_offsets")
	}
	dt := DType(*e.DType)
	size := int64(dt.Size())
	if size == 0 {
		return TensorInfo{}, fmt.Errorf("unknown dtype %q", *e.DType)
	}
	info := TensorInfo{DType: dt, Shape: make([]int, len(*e.Shape))}
	elems := int64(1)
	for i, d := range *e.Shape {
		if d < 0 {
			return TensorInfo{}, fmt.Errorf("negative dimension in shape %v", *e.Shape)
		}
		if d > math.MaxInt || (d != 0 && elems > math.MaxInt64/size/d) {
			return TensorInfo{}, fmt.Errorf("shape %v overflows", *e.Shape)
		}
		elems *= d
		info.Shape[i] = int(d)
	}
	if len(*e.Offsets) != 2 {
		return TensorInfo{}, fmt.Errorf("data_offsets %v: want [begin, end]", *e.Offsets)
	}
	info.Begin, info.End = (*e.Offsets)[0], (*e.Offsets)[1]
	switch {
	case info.Begin < 0 || info.End < 0:
		return TensorInfo{}, fmt.Errorf("negative data_offsets [%d,%d]", info.Begin, info.End)
	case info.End < info.Begin:
		return TensorInfo{}, fmt.Errorf("data_offsets [%d,%d] end before begin", info.Begin, info.End)
	case info.End > dataSize:
		return TensorInfo{}, fmt.Errorf("data_offsets [%d,%d] past the %d-byte data section (truncated file?)", info.Begin, info.End, dataSize)
	case info.End-info.Begin != elems*size:
		return TensorInfo{}, fmt.Errorf("data_offsets [%d,%d] hold %d bytes, %s%v needs %d", info.Begin, info.End, info.End-info.Begin, dt, *e.Shape, elems*size)
	}
	return info, nil
}
