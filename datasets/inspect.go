package datasets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/parquet-go/parquet-go"
)

// Inspect returns the top-level columns of any Parquet file (read through
// the file's own schema, so it needs no Go type) or JSONL file, and its
// first limit rows as maps from column to value (all rows when limit <= 0).
//
// Parquet values come out as parquet-go decodes them for `any` (strings,
// numbers, nested maps and slices; nulls as nil). JSONL numbers come out as
// json.Number, so that large ids keep every digit. JSONL columns are in
// order of first appearance among the rows returned.
func Inspect(path string, limit int) (columns []string, rows []map[string]any, err error) {
	pq, err := isParquet(path)
	if err != nil {
		return nil, nil, fmt.Errorf("inspect: %w", err)
	}
	if pq {
		columns, rows, err = inspectParquet(path, limit)
	} else {
		columns, rows, err = inspectJSONL(path, limit)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("inspect: %w", err)
	}
	return columns, rows, nil
}

func inspectParquet(path string, limit int) (columns []string, rows []map[string]any, err error) {
	pf, f, err := openParquet(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: %v", path, p)
		}
	}()
	columns = topLevelColumns(pf.Schema())
	r := parquet.NewGenericReader[any](pf)
	defer r.Close()
	want := pf.NumRows()
	if limit > 0 && int64(limit) < want {
		want = int64(limit)
	}
	buf := make([]any, 64)
	for int64(len(rows)) < want {
		clear(buf)
		n, err := r.Read(buf[:min(int64(len(buf)), want-int64(len(rows)))])
		for _, v := range buf[:n] {
			m, ok := v.(map[string]any)
			if !ok {
				m = map[string]any{"value": v}
			}
			rows = append(rows, m)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		if n == 0 {
			return nil, nil, fmt.Errorf("%s: reader made no progress", path)
		}
	}
	return columns, rows, nil
}

// errLimit stops a JSONL scan once enough rows were read.
var errLimit = errors.New("limit reached")

func inspectJSONL(path string, limit int) (columns []string, rows []map[string]any, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	seen := map[string]bool{}
	err = eachJSONLObject(path, f, func(row int64, line []byte) error {
		forEachMember(line, func(key, _ []byte) {
			if name := jsonString(key); !seen[name] {
				seen[name] = true
				columns = append(columns, name)
			}
		})
		d := json.NewDecoder(bytes.NewReader(line))
		d.UseNumber()
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			return RowError{File: path, Row: row, Msg: "invalid JSON: " + err.Error()}
		}
		rows = append(rows, m)
		if limit > 0 && len(rows) >= limit {
			return errLimit
		}
		return nil
	})
	if err != nil && !errors.Is(err, errLimit) {
		return nil, nil, err
	}
	return columns, rows, nil
}
