// Package datasets turns user data (JSONL, CSV or Parquet files) into the
// canonical Parquet dataset that the rest of distillery works on, and defines
// the soft-label Parquet schema in which the teacher's answers are stored.
//
// A canonical dataset is one Parquet file of Example rows. Every row carries
// its split (train, val or test), chosen by a salted hash of the row's
// normalised text so that a row never changes split when rows are added
// (see SplitOf), and its provenance (source file and row), so that any
// number reported later can be traced back to the user's file.
//
// The column-by-column description of both schemas, the split algorithm and
// the error messages are in docs/datasets.md.
package datasets

// Split names.
const (
	SplitTrain = "train"
	SplitVal   = "val"
	SplitTest  = "test"
)

// Splits lists the split names in their canonical order.
var Splits = []string{SplitTrain, SplitVal, SplitTest}

// ValidSplit reports whether s is one of train, val or test.
func ValidSplit(s string) bool {
	return s == SplitTrain || s == SplitVal || s == SplitTest
}

// Example is one row of a canonical dataset and also the Parquet schema of
// an imported dataset (columns id, text, label, split, source, row).
type Example struct {
	// ID is the value of ImportOptions.IDField, or, without one, "h"
	// followed by the first 16 hex digits of SHA-256(Normalize(Text)).
	ID string `parquet:"id" json:"id"`
	// Text is the input text exactly as found in the source file.
	Text string `parquet:"text" json:"text"`
	// Label is the gold label, trimmed of surrounding white space; empty
	// (stored as null) when the source has none.
	Label string `parquet:"label,optional" json:"label,omitempty"`
	// Split is "train", "val" or "test".
	Split string `parquet:"split" json:"split"`
	// Source is the base name of the file the row came from.
	Source string `parquet:"source" json:"source"`
	// Row is the 1-based position of the row in Source: the line number for
	// JSONL and CSV (the CSV header is line 1), the row number for Parquet.
	Row int64 `parquet:"row" json:"row"`
}
