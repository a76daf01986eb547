package datasets

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// openParquet opens a Parquet file for reading. The returned *os.File must
// be closed by the caller once the *parquet.File is no longer used.
func openParquet(path string) (pf *parquet.File, f *os.File, err error) {
	f, err = os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: not a readable Parquet file: %v", path, p)
		}
		if err != nil {
			f.Close()
		}
	}()
	pf, err = parquet.OpenFile(f, info.Size(), parquet.SkipBloomFilters(true), parquet.SkipPageIndex(true))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: not a readable Parquet file: %w", path, err)
	}
	return pf, f, nil
}

// topLevelColumns lists the names of the top-level fields of a schema.
func topLevelColumns(s *parquet.Schema) []string {
	fields := s.Fields()
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.Name()
	}
	return names
}

// flatColumn finds the top-level, non-repeated leaf column called name; it
// returns -1 when there is none. Such a column has exactly one value (null
// or not) per row, which is what lets parquetReader read columns in step.
func flatColumn(s *parquet.Schema, name string) (parquet.LeafColumn, int) {
	leaf, ok := s.Lookup(name)
	if !ok || leaf.MaxRepetitionLevel > 0 || len(leaf.Path) != 1 {
		return leaf, -1
	}
	return leaf, leaf.ColumnIndex
}

// columnCursor reads the values of one column chunk one at a time.
type columnCursor struct {
	pages parquet.Pages
	vals  parquet.ValueReader
	buf   []parquet.Value
	i, n  int
}

func newColumnCursor(chunk parquet.ColumnChunk) *columnCursor {
	return &columnCursor{pages: chunk.Pages(), buf: make([]parquet.Value, 256)}
}

// next returns the next value; byte arrays stay valid only until the
// cursor moves to another page, so callers copy what they keep.
func (c *columnCursor) next() (parquet.Value, error) {
	for c.i >= c.n {
		if c.vals == nil {
			p, err := c.pages.ReadPage()
			if err != nil {
				if err == io.EOF {
					return parquet.Value{}, io.ErrUnexpectedEOF // the row group promised more rows
				}
				return parquet.Value{}, err
			}
			c.vals = p.Values()
		}
		n, err := c.vals.ReadValues(c.buf)
		c.i, c.n = 0, n
		if err == io.EOF {
			c.vals = nil
		} else if err != nil {
			return parquet.Value{}, err
		}
	}
	v := c.buf[c.i]
	c.i++
	return v, nil
}

func (c *columnCursor) close() error { return c.pages.Close() }

// parquetReader reads the text, label and id columns of a Parquet file row
// by row, touching no other column. Rows are numbered from 1 in file order.
type parquetReader struct {
	file   string
	fields fieldNames
	pf     *parquet.File
	cols   [3]int // leaf column index of text, label, id; -1 = not read
	rg     int    // next row group
	left   int64  // rows left in the current row group
	cur    [3]*columnCursor
	row    int64
}

func newParquetReader(file string, pf *parquet.File, fields fieldNames) (*parquetReader, error) {
	s := pf.Schema()
	p := &parquetReader{file: file, fields: fields, pf: pf, cols: [3]int{-1, -1, -1}}
	for i, name := range []string{fields.text, fields.label, fields.id} {
		if name == "" {
			continue
		}
		leaf, idx := flatColumn(s, name)
		if idx < 0 {
			quoted := topLevelColumns(s)
			for j, c := range quoted {
				quoted[j] = strconv.Quote(c)
			}
			return nil, RowErrors{{File: file, Field: name,
				Msg: "no such (flat, non-repeated) column in the Parquet file (columns: " + strings.Join(quoted, ", ") + ")"}}
		}
		kind := leaf.Node.Type().Kind()
		switch {
		case i == 0 && kind != parquet.ByteArray:
			return nil, RowErrors{{File: file, Field: name, Msg: fmt.Sprintf("text column has type %s, want a string", kind)}}
		case i > 0 && !stringOrNumber(kind):
			what := [...]string{"", "label", "id"}[i]
			return nil, RowErrors{{File: file, Field: name, Msg: fmt.Sprintf("%s column has type %s, want a string or number", what, kind)}}
		}
		p.cols[i] = idx
	}
	return p, nil
}

func stringOrNumber(k parquet.Kind) bool {
	switch k {
	case parquet.ByteArray, parquet.Int32, parquet.Int64, parquet.Float, parquet.Double:
		return true
	}
	return false
}

// valueString renders a string or number value; ok is false for null.
func valueString(v parquet.Value) (s string, ok bool) {
	if v.IsNull() {
		return "", false
	}
	switch v.Kind() {
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return string(v.ByteArray()), true
	case parquet.Int32:
		return strconv.FormatInt(int64(v.Int32()), 10), true
	case parquet.Int64:
		return strconv.FormatInt(v.Int64(), 10), true
	case parquet.Float:
		return strconv.FormatFloat(float64(v.Float()), 'g', -1, 32), true
	case parquet.Double:
		return strconv.FormatFloat(v.Double(), 'g', -1, 64), true
	case parquet.Boolean:
		return strconv.FormatBool(v.Boolean()), true
	default:
		return v.String(), true
	}
}

func (p *parquetReader) next() (row rawRow, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: row %d: corrupt Parquet data: %v", p.file, p.row, r)
		}
	}()
	for p.left == 0 {
		p.closeCursors()
		groups := p.pf.RowGroups()
		if p.rg >= len(groups) {
			return rawRow{}, io.EOF
		}
		g := groups[p.rg]
		p.rg++
		p.left = g.NumRows()
		chunks := g.ColumnChunks()
		for i, c := range p.cols {
			if c >= 0 {
				p.cur[i] = newColumnCursor(chunks[c])
			}
		}
	}
	p.left--
	p.row++
	out := rawRow{row: p.row}
	var vals [3]string
	var present [3]bool
	for i, c := range p.cur {
		if c == nil {
			continue
		}
		v, err := c.next()
		if err != nil {
			return rawRow{}, fmt.Errorf("%s: row %d: read column %q: %w", p.file, p.row, [...]string{p.fields.text, p.fields.label, p.fields.id}[i], err)
		}
		vals[i], present[i] = valueString(v)
	}
	if !present[0] {
		return rawRow{}, RowError{File: p.file, Row: p.row, Field: p.fields.text, Msg: "text is null, want a string"}
	}
	out.text, out.label = vals[0], strings.TrimSpace(vals[1])
	if p.cols[2] >= 0 {
		if !present[2] || strings.TrimSpace(vals[2]) == "" {
			return rawRow{}, RowError{File: p.file, Row: p.row, Field: p.fields.id, Msg: "empty id"}
		}
		out.id = vals[2]
	}
	return out, nil
}

func (p *parquetReader) closeCursors() {
	for i, c := range p.cur {
		if c != nil {
			c.close()
			p.cur[i] = nil
		}
	}
}
