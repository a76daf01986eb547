package datasets

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
)

// Stats summarises a dataset, soft-label or JSONL file.
type Stats struct {
	Rows    int64            `json:"rows"`
	BySplit map[string]int64 `json:"by_split"` // from a "split" column, when there is one
	ByLabel map[string]int64 `json:"by_label"` // from a "label" column; unlabelled rows not counted
	// TextField is the column TextChars describes: "text", else "prompt"
	// (soft labels); empty when the file has neither.
	TextField string `json:"text_field"`
	// TextChars describes text length in Unicode code points. The median
	// averages the two middle values; P95 is the nearest-rank 95th percentile.
	TextChars struct {
		Min    float64 `json:"min"`
		Median float64 `json:"median"`
		Mean   float64 `json:"mean"`
		P95    float64 `json:"p95"`
		Max    float64 `json:"max"`
	} `json:"text_chars"`
	Columns []string `json:"columns"` // top-level columns, in file order (JSONL: order of first appearance)
}

// textFields are the columns ComputeStats measures, in order of preference.
var textFields = []string{"text", "prompt"}

// ComputeStats summarises a canonical dataset, a soft-label file (text
// statistics on "prompt") or any other Parquet file, told apart from JSONL
// by the Parquet magic bytes rather than by the extension. A JSONL file
// must be valid: a bad line gives a RowError naming it.
func ComputeStats(path string) (Stats, error) {
	pq, err := isParquet(path)
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	var st Stats
	var lengths []int32
	if pq {
		lengths, err = parquetStats(path, &st)
	} else {
		lengths, err = jsonlStats(path, &st)
	}
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	st.setTextChars(lengths)
	return st, nil
}

// isParquet reports whether the file starts with the Parquet magic "PAR1".
func isParquet(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var magic [4]byte
	n, err := io.ReadFull(f, magic[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return n == 4 && string(magic[:]) == "PAR1", nil
}

func (st *Stats) setTextChars(lengths []int32) {
	if len(lengths) == 0 {
		return
	}
	slices.Sort(lengths)
	n := len(lengths)
	var sum float64
	for _, l := range lengths {
		sum += float64(l)
	}
	t := &st.TextChars
	t.Min = float64(lengths[0])
	t.Max = float64(lengths[n-1])
	t.Mean = sum / float64(n)
	t.Median = float64(lengths[(n-1)/2]+lengths[n/2]) / 2
	rank := (95*n + 99) / 100 // ceil(0.95 n)
	t.P95 = float64(lengths[rank-1])
}

// parquetStats reads only the text, split and label columns of a Parquet file.
func parquetStats(path string, st *Stats) ([]int32, error) {
	pf, f, err := openParquet(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := pf.Schema()
	st.Columns = topLevelColumns(s)
	st.Rows = pf.NumRows()
	st.BySplit, st.ByLabel = map[string]int64{}, map[string]int64{}
	cols := [3]int{-1, -1, -1} // text, split, label
	for _, name := range textFields {
		if leaf, idx := flatColumn(s, name); idx >= 0 && leaf.Node.Type().Kind() == parquet.ByteArray {
			cols[0], st.TextField = idx, name
			break
		}
	}
	if leaf, idx := flatColumn(s, "split"); idx >= 0 && leaf.Node.Type().Kind() == parquet.ByteArray {
		cols[1] = idx
	}
	if leaf, idx := flatColumn(s, "label"); idx >= 0 && stringOrNumber(leaf.Node.Type().Kind()) {
		cols[2] = idx
	}
	lengths := make([]int32, 0, st.Rows)
	for _, g := range pf.RowGroups() {
		chunks := g.ColumnChunks()
		for i, c := range cols {
			if c < 0 {
				continue
			}
			if err := eachValue(chunks[c], g.NumRows(), func(v parquet.Value) {
				switch i {
				case 0:
					if !v.IsNull() {
						lengths = append(lengths, int32(utf8.RuneCount(v.ByteArray())))
					}
				case 1:
					if s, ok := valueString(v); ok && s != "" {
						st.BySplit[s]++
					}
				case 2:
					if s, ok := valueString(v); ok && s != "" {
						st.ByLabel[s]++
					}
				}
			}); err != nil {
				return nil, fmt.Errorf("%s: column %q: %w", path, [...]string{st.TextField, "split", "label"}[i], err)
			}
		}
	}
	return lengths, nil
}

// eachValue calls fn for each of the n values of a flat column chunk.
func eachValue(chunk parquet.ColumnChunk, n int64, fn func(parquet.Value)) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("corrupt Parquet data: %v", p)
		}
	}()
	c := newColumnCursor(chunk)
	defer c.close()
	for ; n > 0; n-- {
		v, err := c.next()
		if err != nil {
			return err
		}
		fn(v)
	}
	return nil
}

// jsonlStats scans a JSONL file line by line.
func jsonlStats(path string, st *Stats) ([]int32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st.BySplit, st.ByLabel = map[string]int64{}, map[string]int64{}
	seenCol := map[string]bool{}
	var lengths [2][]int32 // per entry of textFields
	err = eachJSONLObject(path, f, func(row int64, line []byte) error {
		st.Rows++
		forEachMember(line, func(key, val []byte) {
			name := jsonString(key)
			if !seenCol[name] {
				seenCol[name] = true
				st.Columns = append(st.Columns, name)
			}
			switch {
			case name == "split" && val[0] == '"':
				if s := jsonString(val); s != "" {
					st.BySplit[s]++
				}
			case name == "label" && (val[0] == '"' || val[0] == '-' || ('0' <= val[0] && val[0] <= '9')):
				s := string(val)
				if val[0] == '"' {
					s = jsonString(val)
				}
				if s != "" {
					st.ByLabel[s]++
				}
			}
			for i, tf := range textFields {
				if name == tf && val[0] == '"' {
					lengths[i] = append(lengths[i], int32(utf8.RuneCountInString(jsonString(val))))
				}
			}
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, tf := range textFields {
		if seenCol[tf] {
			st.TextField = tf
			return lengths[i], nil
		}
	}
	return nil, nil
}

// eachJSONLObject calls fn with each non-blank line of a JSONL stream after
// checking that it is a valid UTF-8 JSON object; a bad line stops the scan
// with a RowError.
func eachJSONLObject(path string, r io.Reader, fn func(row int64, line []byte) error) error {
	j := &jsonlReader{file: path, r: bufio.NewReaderSize(r, 1<<20)}
	for {
		line, err := j.readLine()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		j.line++
		if j.line == 1 {
			line = bytes.TrimPrefix(line, utf8BOM)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := checkJSONObject(path, j.line, line); err != nil {
			return err
		}
		if err := fn(j.line, line); err != nil {
			return err
		}
	}
}

// checkJSONObject returns a RowError unless line is a UTF-8 JSON object.
func checkJSONObject(file string, row int64, line []byte) error {
	switch {
	case !utf8.Valid(line):
		return RowError{File: file, Row: row, Msg: fmt.Sprintf("invalid UTF-8 at byte %d", invalidUTF8Offset(line)+1)}
	case !jsonValid(line):
		return RowError{File: file, Row: row, Msg: "invalid JSON: " + jsonSyntaxError(line)}
	case line[skipSpace(line, 0)] != '{':
		return RowError{File: file, Row: row, Msg: fmt.Sprintf("row is a JSON %s, want an object (one object per line)", jsonKind(line[skipSpace(line, 0)]))}
	}
	return nil
}
