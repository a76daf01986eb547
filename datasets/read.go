package datasets

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// ReadExamples reads every row of a canonical dataset written by Import.
func ReadExamples(path string) ([]Example, error) {
	var out []Example
	err := readParquetRows(path, []string{"id", "text", "split"}, "a canonical dataset", func(e Example) { out = append(out, e) })
	return out, err
}

// ReadSplit reads the rows of one split ("train", "val" or "test") of a
// canonical dataset, in file order.
func ReadSplit(path, split string) ([]Example, error) {
	if !ValidSplit(split) {
		return nil, fmt.Errorf("read %s: unknown split %q (want train, val or test)", path, split)
	}
	var out []Example
	err := readParquetRows(path, []string{"id", "text", "split"}, "a canonical dataset", func(e Example) {
		if e.Split == split {
			out = append(out, e)
		}
	})
	return out, err
}

// readParquetRows streams the rows of a Parquet file of T into fn, after
// checking that the file has the required columns: without the check,
// parquet-go would fill missing columns with zero values.
func readParquetRows[T any](path string, required []string, what string, fn func(T)) (err error) {
	pf, f, err := openParquet(path)
	if err != nil {
		return fmt.Errorf("read %w", err)
	}
	defer f.Close()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("read %s: %v", path, p)
		}
	}()
	cols := topLevelColumns(pf.Schema())
	for _, want := range required {
		if !contains(cols, want) {
			return fmt.Errorf("read %s: not %s: no %q column (columns: %s)", path, what, want, strings.Join(cols, ", "))
		}
	}
	r := parquet.NewGenericReader[T](pf)
	defer r.Close()
	buf := make([]T, 256)
	for {
		clear(buf) // rows handed to fn must not share slices with the next batch
		n, err := r.Read(buf)
		for _, row := range buf[:n] {
			fn(row)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if n == 0 {
			return fmt.Errorf("read %s: reader made no progress", path)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// SHA256File returns the hex SHA-256 of a file's content.
func SHA256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("sha256: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("sha256 %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
