package datasets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"path/filepath"
	"unicode/utf8"

	"github.com/distillery/distillery/store"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
)

// Source is one input file of an import.
type Source struct {
	Path string
	// Format is "auto" (or ""), "jsonl", "csv" or "parquet". Auto picks by
	// extension: .jsonl, .ndjson and .json are JSON Lines, .csv is CSV,
	// .parquet is Parquet; a further .gz on JSONL or CSV is decompressed.
	Format string
	// Split is "" to assign each row by SplitOf, or "train", "val" or "test"
	// to put every row of this file in that split.
	Split string
}

// ImportOptions configure Import.
type ImportOptions struct {
	Sources     []Source
	TextField   string    // input field holding the text; default "text"
	LabelField  string    // input field holding the label; "" = no labels
	IDField     string    // input field holding a row id; "" = content hash
	Fractions   Fractions // used by sources without a fixed split
	Seed        string    // salt for the split hash
	Dedupe      bool      // drop rows whose normalised text was seen before (first wins)
	SkipInvalid bool      // skip bad rows (counted, first few reported) instead of failing
	Out         string    // path of the canonical Parquet file to write
	// Progress, when set, is called every few thousand rows and at the end
	// with the number of input rows read so far.
	Progress func(rows int64)
}

// ImportResult summarises an import.
type ImportResult struct {
	Rows       int64            `json:"rows"`       // rows written
	Duplicates int64            `json:"duplicates"` // rows dropped by Dedupe
	Invalid    int64            `json:"invalid"`    // bad rows skipped (SkipInvalid)
	BySplit    map[string]int64 `json:"by_split"`
	ByLabel    map[string]int64 `json:"by_label"` // rows without a label are not counted
	Out        string           `json:"out"`
	SHA256     string           `json:"sha256"` // hex SHA-256 of the Out file
	Warnings   []string         `json:"warnings,omitempty"`
}

const (
	// rowGroupRows is the number of rows per Parquet row group in Out.
	rowGroupRows = 16 * 1024
	// writeBatch is how many rows are buffered before a Parquet write.
	writeBatch = 1024
	// maxRowErrors is how many bad rows Import collects, without
	// SkipInvalid, before it stops reading.
	maxRowErrors = 1000
	// maxSkipWarnings is how many skipped rows are spelled out in Warnings.
	maxSkipWarnings = 5
	// progressEvery is the number of rows between Progress calls.
	progressEvery = 10000
)

// Import reads the sources in order and writes them, validated, split and
// optionally deduplicated, as one canonical Parquet file (Example rows) at
// opts.Out. The file is written atomically: on any error nothing is left
// at Out (an older file there stays untouched).
//
// Bad rows (see RowError) make Import fail with a RowErrors listing them,
// unless opts.SkipInvalid is set, in which case they are counted in
// ImportResult.Invalid and the first few are reported in Warnings. Problems
// with a whole file (unreadable, unknown format, a missing CSV or Parquet
// column) always fail. An import that yields no rows fails too.
//
// Rows stream from the input to the output in batches; memory grows only
// with the dedupe set (16 bytes per distinct text) and one row group.
func Import(ctx context.Context, opts ImportOptions) (ImportResult, error) {
	if err := opts.check(); err != nil {
		return ImportResult{}, err
	}
	im := &importer{
		opts:   opts,
		fields: fieldNames{text: opts.TextField, label: opts.LabelField, id: opts.IDField},
		res: ImportResult{
			Out:     opts.Out,
			BySplit: map[string]int64{},
			ByLabel: map[string]int64{},
		},
		seen:    map[[16]byte]uint8{},
		idSeed:  maphash.MakeSeed(),
		batch:   make([]Example, 0, writeBatch),
		ids:     map[uint64]struct{}{},
		noLabel: 0,
	}
	var inner error // the callback's own error, reported without WriteAtomic's prefix
	err := store.WriteAtomic(opts.Out, func(w io.Writer) error {
		inner = im.run(ctx, w)
		return inner
	})
	if inner != nil {
		return ImportResult{}, inner
	}
	if err != nil {
		return ImportResult{}, err
	}
	im.finishWarnings()
	return im.res, nil
}

// check fills in defaults and rejects inconsistent options before any work.
func (o *ImportOptions) check() error {
	if o.TextField == "" {
		o.TextField = "text"
	}
	if len(o.Sources) == 0 {
		return errors.New("import: no sources")
	}
	if o.Out == "" {
		return errors.New("import: no output path")
	}
	hashed := false
	for i, s := range o.Sources {
		if s.Path == "" {
			return fmt.Errorf("import: source %d has no path", i+1)
		}
		if s.Split != "" && !ValidSplit(s.Split) {
			return fmt.Errorf("import: %s: unknown split %q (want train, val or test, or empty to split by hash)", s.Path, s.Split)
		}
		if _, err := formatOf(s); err != nil {
			return fmt.Errorf("import: %w", err)
		}
		if sameFile(s.Path, o.Out) {
			return fmt.Errorf("import: output %s is also an input", o.Out)
		}
		hashed = hashed || s.Split == ""
	}
	if hashed {
		if err := o.Fractions.Validate(); err != nil {
			return fmt.Errorf("import: %w", err)
		}
	}
	return nil
}

// zstdCodec compresses written Parquet pages. The fastest zstd level
// compresses text about as well as the default level here at half the
// CPU cost, which dominates import time.
var zstdCodec = zstd.Codec{Level: zstd.SpeedFastest}

// importer holds the state of one Import.
type importer struct {
	opts    ImportOptions
	fields  fieldNames
	res     ImportResult
	pw      *parquet.GenericWriter[Example]
	batch   []Example
	seen    map[[16]byte]uint8 // normalised-text hash -> bit set of splits it went to
	repeats int64              // rows whose normalised text was seen before (kept, !Dedupe)
	leaks   int64              // texts found in more than one split
	idSeed  maphash.Seed
	ids     map[uint64]struct{} // hashes of explicit ids, to warn about repeats
	dupIDs  int64
	noLabel int64
	read    int64  // rows read, good or bad
	norm    []byte // reused buffer for the normalised text
	errs    RowErrors
}

// run imports every source into w, then closes the Parquet writer.
func (im *importer) run(ctx context.Context, w io.Writer) error {
	h := sha256.New()
	im.pw = parquet.NewGenericWriter[Example](io.MultiWriter(w, h),
		parquet.Compression(&zstdCodec),
		parquet.MaxRowsPerRowGroup(rowGroupRows),
		parquet.KeyValueMetadata("distillery.schema", "example/v1"),
	)
	for _, src := range im.opts.Sources {
		if err := im.importSource(ctx, src); err != nil {
			return err
		}
	}
	if im.opts.Progress != nil {
		im.opts.Progress(im.read)
	}
	if len(im.errs) > 0 {
		return im.errs
	}
	if err := im.flush(); err != nil {
		return err
	}
	if im.res.Rows == 0 {
		return fmt.Errorf("import: no rows to write (%d read, %d invalid, %d duplicates)", im.read, im.res.Invalid, im.res.Duplicates)
	}
	if err := im.pw.Close(); err != nil {
		return fmt.Errorf("import: write %s: %w", im.opts.Out, err)
	}
	im.res.SHA256 = hex.EncodeToString(h.Sum(nil))
	return nil
}

// importSource streams the rows of one source into the writer.
func (im *importer) importSource(ctx context.Context, src Source) error {
	rr, closeFn, err := openSource(src, im.fields)
	if err != nil {
		return err
	}
	defer closeFn()
	base := filepath.Base(src.Path)
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("import: %s: %w", src.Path, err)
			}
		}
		r, err := rr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		im.read++
		if im.opts.Progress != nil && im.read%progressEvery == 0 {
			im.opts.Progress(im.read)
		}
		if err == nil {
			err = im.add(src, base, r)
		}
		if err == nil {
			continue
		}
		var re RowError
		if !errors.As(err, &re) {
			return err
		}
		im.res.Invalid++
		if im.opts.SkipInvalid {
			if im.res.Invalid <= maxSkipWarnings {
				im.res.Warnings = append(im.res.Warnings, "skipped "+re.Error())
			}
			continue
		}
		im.errs = append(im.errs, re)
		if len(im.errs) >= maxRowErrors {
			return fmt.Errorf("import stopped after %d bad rows: %w", maxRowErrors, im.errs)
		}
	}
}

// add validates one row and queues it for writing. A bad row gives a RowError.
func (im *importer) add(src Source, base string, r rawRow) error {
	bad := func(field, msg string) error {
		return RowError{File: src.Path, Row: r.row, Field: field, Msg: msg}
	}
	if !utf8.ValidString(r.text) {
		return bad(im.fields.text, fmt.Sprintf("invalid UTF-8 at byte %d", invalidUTF8Offset([]byte(r.text))+1))
	}
	if r.text == "" {
		return bad(im.fields.text, "empty text")
	}
	im.norm = appendNormalized(im.norm[:0], r.text)
	if len(im.norm) == 0 {
		return bad(im.fields.text, "text is only white space")
	}
	if !utf8.ValidString(r.label) {
		return bad(im.fields.label, "invalid UTF-8 in label")
	}
	if !utf8.ValidString(r.id) {
		return bad(im.fields.id, "invalid UTF-8 in id")
	}
	sum := sha256.Sum256(im.norm)
	contentID := "h" + hex.EncodeToString(sum[:8])
	split := src.Split
	if split == "" {
		split = SplitOf(contentID, im.opts.Seed, im.opts.Fractions)
	}
	var key [16]byte
	copy(key[:], sum[:16])
	splits, dup := im.seen[key]
	if dup {
		if im.opts.Dedupe {
			im.res.Duplicates++
			return nil
		}
		im.repeats++
		if splits&splitBit(split) == 0 && splits&(splits-1) == 0 {
			im.leaks++ // counted once, when the text reaches its second split
		}
	}
	im.seen[key] = splits | splitBit(split)
	if len(im.errs) > 0 {
		return nil // the import fails anyway; only look for more bad rows
	}
	id := r.id
	if id == "" {
		id = contentID
	} else {
		hid := maphash.String(im.idSeed, id)
		if _, ok := im.ids[hid]; ok {
			im.dupIDs++
		}
		im.ids[hid] = struct{}{}
	}
	if r.label != "" {
		im.res.ByLabel[r.label]++
	} else if im.fields.label != "" {
		im.noLabel++
	}
	im.res.BySplit[split]++
	im.res.Rows++
	im.batch = append(im.batch, Example{ID: id, Text: r.text, Label: r.label, Split: split, Source: base, Row: r.row})
	if len(im.batch) == cap(im.batch) {
		return im.flush()
	}
	return nil
}

func splitBit(s string) uint8 {
	switch s {
	case SplitTrain:
		return 1
	case SplitVal:
		return 2
	default:
		return 4
	}
}

// flush writes the buffered rows.
func (im *importer) flush() error {
	if len(im.batch) == 0 {
		return nil
	}
	if _, err := im.pw.Write(im.batch); err != nil {
		return fmt.Errorf("import: write %s: %w", im.opts.Out, err)
	}
	clear(im.batch)
	im.batch = im.batch[:0]
	return nil
}

// finishWarnings adds the summary warnings of a successful import.
func (im *importer) finishWarnings() {
	w := &im.res.Warnings
	if im.res.Invalid > 0 {
		*w = append(*w, fmt.Sprintf("skipped %s", plural(im.res.Invalid, "invalid row")))
	}
	if im.repeats > 0 {
		msg := fmt.Sprintf("%s the text of an earlier row (after normalisation)", plural(im.repeats, "row repeats", "rows repeat"))
		if im.opts.IDField == "" {
			msg += " and so share its id"
		}
		*w = append(*w, msg+"; set Dedupe to drop them")
	}
	if im.leaks > 0 {
		*w = append(*w, fmt.Sprintf("%s in more than one split (fixed-split sources overlap); set Dedupe to keep only the first", plural(im.leaks, "text appears", "texts appear")))
	}
	if im.dupIDs > 0 {
		*w = append(*w, fmt.Sprintf("%s the %q of an earlier row", plural(im.dupIDs, "row repeats", "rows repeat"), im.opts.IDField))
	}
	if im.noLabel > 0 {
		*w = append(*w, fmt.Sprintf("%s no %q", plural(im.noLabel, "row has", "rows have"), im.opts.LabelField))
	}
	if im.opts.LabelField != "" && len(im.res.ByLabel) == 1 {
		*w = append(*w, "every labelled row has the same label")
	}
	f := im.opts.Fractions
	for _, s := range []struct {
		name string
		frac float64
	}{{SplitTrain, f.Train}, {SplitVal, f.Val}, {SplitTest, f.Test}} {
		if im.res.BySplit[s.name] == 0 && s.frac > 0 && im.anyHashed() {
			*w = append(*w, fmt.Sprintf("split %q is empty although its fraction is %v", s.name, s.frac))
		}
	}
}

func (im *importer) anyHashed() bool {
	for _, s := range im.opts.Sources {
		if s.Split == "" {
			return true
		}
	}
	return false
}

// plural formats n with the singular or plural phrase ("1 row has",
// "3 rows have"); a lone phrase gets an "s" in the plural.
func plural(n int64, one string, many ...string) string {
	if n == 1 {
		return "1 " + one
	}
	if len(many) > 0 {
		return fmt.Sprintf("%d %s", n, many[0])
	}
	return fmt.Sprintf("%d %ss", n, one)
}
