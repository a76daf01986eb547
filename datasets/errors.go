package datasets

import (
	"fmt"
	"strings"
)

// RowError describes one bad input row. Its message always names the file
// and the 1-based row (line for JSONL and CSV) so that the user can find it.
type RowError struct {
	File  string // path of the input file, as given
	Row   int64  // 1-based row or line; 0 when the problem is the whole file
	Field string // the field concerned; empty when the row as a whole is bad
	Msg   string
}

// Error formats the error as `FILE:ROW: field "text": empty text`, leaving
// out the field part when Field is empty.
func (e RowError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Row > 0 {
		fmt.Fprintf(&b, ":%d", e.Row)
	}
	b.WriteString(": ")
	if e.Field != "" {
		fmt.Fprintf(&b, "field %q: ", e.Field)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// maxListedRowErrors is how many rows RowErrors.Error spells out.
const maxListedRowErrors = 10

// RowErrors is the error Import returns when rows are bad and
// ImportOptions.SkipInvalid is false. It holds the bad rows in file order
// (at most maxRowErrors of them: reading stops there).
type RowErrors []RowError

// Error lists the first 10 bad rows, one per line, then "and N more".
func (es RowErrors) Error() string {
	var b strings.Builder
	if len(es) == 1 {
		return es[0].Error()
	}
	fmt.Fprintf(&b, "%d bad rows:", len(es))
	for i, e := range es {
		if i == maxListedRowErrors {
			fmt.Fprintf(&b, "\n  and %d more", len(es)-maxListedRowErrors)
			break
		}
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return b.String()
}
