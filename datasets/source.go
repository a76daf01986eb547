package datasets

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// sameFile reports whether two paths name the same file (or would).
func sameFile(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	ia, err1 := os.Stat(a)
	ib, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(ia, ib)
}

// formatOf resolves a source's format: "jsonl", "csv", "parquet", with a
// ".gz" suffix ("jsonl.gz", "csv.gz") when auto-detected as gzip-compressed.
func formatOf(s Source) (string, error) {
	switch f := strings.ToLower(s.Format); f {
	case "jsonl", "csv", "parquet":
		if strings.HasSuffix(strings.ToLower(s.Path), ".gz") && f != "parquet" {
			return f + ".gz", nil
		}
		return f, nil
	case "", "auto":
		name := strings.ToLower(s.Path)
		gz := strings.HasSuffix(name, ".gz")
		name = strings.TrimSuffix(name, ".gz")
		var f string
		switch filepath.Ext(name) {
		case ".jsonl", ".ndjson", ".json":
			f = "jsonl"
		case ".csv":
			f = "csv"
		case ".parquet", ".pq":
			if gz {
				return "", fmt.Errorf("%s: gzip-compressed Parquet is not supported (Parquet compresses internally)", s.Path)
			}
			f = "parquet"
		default:
			return "", fmt.Errorf("%s: cannot tell the format from the extension %q; set the format to jsonl, csv or parquet", s.Path, filepath.Ext(name))
		}
		if gz {
			f += ".gz"
		}
		return f, nil
	default:
		return "", fmt.Errorf("%s: unknown format %q (want auto, jsonl, csv or parquet)", s.Path, s.Format)
	}
}

// openSource opens a source file and the reader for its format.
func openSource(src Source, fields fieldNames) (rowReader, func() error, error) {
	format, err := formatOf(src)
	if err != nil {
		return nil, nil, err
	}
	if format == "parquet" {
		pf, f, err := openParquet(src.Path)
		if err != nil {
			return nil, nil, err
		}
		pr, err := newParquetReader(src.Path, pf, fields)
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		return pr, func() error { pr.closeCursors(); return f.Close() }, nil
	}
	f, err := os.Open(src.Path)
	if err != nil {
		return nil, nil, err
	}
	var r io.Reader = f
	if strings.HasSuffix(format, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("%s: %w", src.Path, err)
		}
		r = zr
		format = strings.TrimSuffix(format, ".gz")
	}
	if format == "csv" {
		cr, err := newCSVReader(src.Path, r, fields)
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		return cr, f.Close, nil
	}
	return newJSONLReader(src.Path, r, fields), f.Close, nil
}
