package datasets

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// csvReader reads a CSV file whose first record is a header naming the
// columns. Every record must have as many fields as the header. Rows are
// numbered by the line on which the record starts (the header is line 1).
type csvReader struct {
	file                     string
	fields                   fieldNames
	r                        *csv.Reader
	width                    int
	textCol, labelCol, idCol int // -1 = not read
}

func newCSVReader(file string, r io.Reader, fields fieldNames) (*csvReader, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, RowErrors{{File: file, Row: 1, Msg: "empty CSV file: want a header line naming the columns"}}
	}
	if err != nil {
		return nil, RowErrors{csvRowError(file, 1, err)}
	}
	header = append([]string(nil), header...)
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], string(utf8BOM))
	}
	c := &csvReader{file: file, fields: fields, r: cr, width: len(header), labelCol: -1, idCol: -1}
	col := func(name string) (int, error) {
		for i, h := range header {
			if h == name {
				return i, nil
			}
		}
		for i, h := range header { // tolerate stray spaces around names
			if strings.TrimSpace(h) == name {
				return i, nil
			}
		}
		quoted := make([]string, len(header))
		for i, h := range header {
			quoted[i] = fmt.Sprintf("%q", h)
		}
		return -1, RowErrors{{File: file, Row: 1, Field: name,
			Msg: "no such column in the CSV header (columns: " + strings.Join(quoted, ", ") + ")"}}
	}
	if c.textCol, err = col(fields.text); err != nil {
		return nil, err
	}
	if fields.label != "" {
		if c.labelCol, err = col(fields.label); err != nil {
			return nil, err
		}
	}
	if fields.id != "" {
		if c.idCol, err = col(fields.id); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *csvReader) next() (rawRow, error) {
	rec, err := c.r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return rawRow{}, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			if errors.Is(pe.Err, csv.ErrFieldCount) {
				return rawRow{}, RowError{File: c.file, Row: int64(pe.StartLine),
					Msg: fmt.Sprintf("record has %d fields, the header has %d", len(rec), c.width)}
			}
			return rawRow{}, csvRowError(c.file, int64(pe.StartLine), err)
		}
		return rawRow{}, fmt.Errorf("%s: %w", c.file, err)
	}
	line, _ := c.r.FieldPos(0)
	out := rawRow{row: int64(line), text: rec[c.textCol]}
	if c.labelCol >= 0 {
		out.label = strings.TrimSpace(rec[c.labelCol])
	}
	if c.idCol >= 0 {
		out.id = rec[c.idCol]
		if strings.TrimSpace(out.id) == "" {
			return rawRow{}, RowError{File: c.file, Row: out.row, Field: c.fields.id, Msg: "empty id"}
		}
	}
	return out, nil
}

// csvRowError turns a csv.ParseError into a RowError without repeating the
// position that RowError already prints.
func csvRowError(file string, row int64, err error) RowError {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		if pe.StartLine > 0 {
			row = int64(pe.StartLine)
		}
		msg := pe.Err.Error()
		if pe.Line != pe.StartLine || pe.Column > 0 {
			msg = fmt.Sprintf("%s (line %d, column %d)", msg, pe.Line, pe.Column)
		}
		return RowError{File: file, Row: row, Msg: "invalid CSV: " + msg}
	}
	return RowError{File: file, Row: row, Msg: err.Error()}
}
