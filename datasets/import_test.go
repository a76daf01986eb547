package datasets

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestImportBadRows checks that each kind of bad input gives an error that
// names the file and the row (or the file, for file-level problems).
func TestImportBadRows(t *testing.T) {
	type bodyRow struct {
		Body string `parquet:"body"`
	}
	type optRow struct {
		Text *string `parquet:"text,optional"`
	}
	type intText struct {
		Text int64 `parquet:"text"`
	}
	type boolLabel struct {
		Text  string `parquet:"text"`
		Label bool   `parquet:"label"`
	}
	tests := []struct {
		name  string
		file  func(t *testing.T, dir string) string // returns the input path
		opts  func(o *ImportOptions)
		want  string // the error must start with FILE + want
		row   int64  // expected RowError.Row; -1 = not a RowError
		field string
	}{
		{"invalid JSON", jsonl(`{"text": "ok"}` + "\n" + `{"text": "a"`), nil, `:2: invalid JSON: unexpected end of JSON input`, 2, ""},
		{"JSON array file", jsonl(`[{"text": "a"},`), nil, `:1: invalid JSON:`, 1, ""},
		{"not an object", jsonl(`{"text": "ok"}` + "\n\n" + `["text", "a"]`), nil, `:3: row is a JSON array, want an object`, 3, ""},
		{"bad UTF-8", jsonl(`{"text": "ok"}` + "\n" + `{"text": "ok"}` + "\n" + "{\"text\": \"caf\xe9\"}"), nil, `:3: invalid UTF-8 at byte 14`, 3, ""},
		{"missing text", jsonl(`{"body": "x", "id": 1}`), nil, `:1: field "text": missing (row has fields: "body", "id")`, 1, "text"},
		{"empty text", jsonl(`{"text": "fine"}` + "\n" + `{"text": ""}`), nil, `:2: field "text": empty text`, 2, "text"},
		{"whitespace text", jsonl(`{"text": " \t\u00a0\n "}`), nil, `:1: field "text": text is only white space`, 1, "text"},
		{"text not a string", jsonl(`{"text": 42}`), nil, `:1: field "text": text must be a string, got number`, 1, "text"},
		{"text object", jsonl(`{"text": {"a": 1}}`), nil, `:1: field "text": text must be a string, got object`, 1, "text"},
		{"null text", jsonl(`{"text": null}`), nil, `:1: field "text": text is null, want a string`, 1, "text"},
		{"label boolean", jsonl(`{"text": "a", "label": true}`), labels, `:1: field "label": label must be a string or number, got boolean`, 1, "label"},
		{"label array", jsonl(`{"text": "a", "label": ["x"]}`), labels, `:1: field "label": label must be a string or number, got array`, 1, "label"},
		{"missing id", jsonl(`{"text": "a"}`), ids, `:1: field "id": missing (row has fields: "text")`, 1, "id"},
		{"empty id", jsonl(`{"text": "a", "id": " "}`), ids, `:1: field "id": empty id`, 1, "id"},
		{"custom text field", jsonl(`{"text": "a"}`), func(o *ImportOptions) { o.TextField = "review" }, `:1: field "review": missing (row has fields: "text")`, 1, "review"},
		{"CSV missing column", csvFile("id,body\n1,hello\n"), nil, `:1: field "text": no such column in the CSV header (columns: "id", "body")`, 1, "text"},
		{"CSV missing label column", csvFile("id,text\n1,hello\n"), labels, `:1: field "label": no such column in the CSV header (columns: "id", "text")`, 1, "label"},
		{"CSV field count", csvFile("id,text\n1,hello\n2\n"), nil, `:3: record has 1 fields, the header has 2`, 3, ""},
		{"CSV empty text", csvFile("id,text\n1,\"\"\n"), nil, `:2: field "text": empty text`, 2, "text"},
		{"CSV bare quote", csvFile("id,text\n1,ok\n2,a \"b\" c\n"), nil, `:3: invalid CSV: bare " in non-quoted-field`, 3, ""},
		{"CSV bad UTF-8", csvFile("id,text\n1,ok\n2,\xffbad\n"), nil, `:3: field "text": invalid UTF-8 at byte 1`, 3, "text"},
		{"CSV empty file", csvFile(""), nil, `:1: empty CSV file`, 1, ""},
		{"Parquet missing column", func(t *testing.T, dir string) string {
			return writeParquet(t, dir, "bad.parquet", []bodyRow{{"x"}})
		}, nil, `: field "text": no such (flat, non-repeated) column in the Parquet file (columns: "body")`, 0, "text"},
		{"Parquet null text", func(t *testing.T, dir string) string {
			return writeParquet(t, dir, "bad.parquet", []optRow{{ptr("a")}, {ptr("b")}, {nil}})
		}, nil, `:3: field "text": text is null, want a string`, 3, "text"},
		{"Parquet empty text", func(t *testing.T, dir string) string {
			return writeParquet(t, dir, "bad.parquet", []optRow{{ptr("a")}, {ptr("")}})
		}, nil, `:2: field "text": empty text`, 2, "text"},
		{"Parquet int text", func(t *testing.T, dir string) string {
			return writeParquet(t, dir, "bad.parquet", []intText{{1}})
		}, nil, `: field "text": text column has type INT64, want a string`, 0, "text"},
		{"Parquet bool label", func(t *testing.T, dir string) string {
			return writeParquet(t, dir, "bad.parquet", []boolLabel{{"a", true}})
		}, labels, `: field "label": label column has type BOOLEAN, want a string or number`, 0, "label"},
		{"not Parquet", func(t *testing.T, dir string) string {
			return writeFile(t, dir, "bad.parquet", "PAR1 but not really")
		}, nil, `: not a readable Parquet file`, -1, ""},
		{"unknown extension", func(t *testing.T, dir string) string {
			return writeFile(t, dir, "bad.txt", "hello")
		}, nil, `: cannot tell the format from the extension ".txt"; set the format to jsonl, csv or parquet`, -1, ""},
		{"unknown format", jsonl(`{"text": "a"}`), func(o *ImportOptions) { o.Sources[0].Format = "xml" },
			`: unknown format "xml" (want auto, jsonl, csv or parquet)`, -1, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in := tc.file(t, dir)
			opts := ImportOptions{Sources: []Source{{Path: in}}, Fractions: hashSplit, Out: filepath.Join(dir, "out.parquet")}
			if tc.opts != nil {
				tc.opts(&opts)
			}
			_, err := Import(context.Background(), opts)
			if err == nil {
				t.Fatal("import succeeded, want an error")
			}
			msg := err.Error()
			if want := in + tc.want; !strings.Contains(msg, want) {
				t.Errorf("error\n  %s\ndoes not contain\n  %s", msg, want)
			}
			var res RowErrors
			switch {
			case tc.row < 0:
				if errors.As(err, &res) {
					t.Errorf("file-level error came as RowErrors: %v", err)
				}
			case !errors.As(err, &res):
				t.Errorf("error %T is not RowErrors: %v", err, err)
			default:
				if res[0].File != in || res[0].Row != tc.row || res[0].Field != tc.field {
					t.Errorf("RowError{File %q, Row %d, Field %q}, want {%q, %d, %q}", res[0].File, res[0].Row, res[0].Field, in, tc.row, tc.field)
				}
			}
			mustNotExist(t, opts.Out)
		})
	}
}

func jsonl(content string) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string { return writeFile(t, dir, "bad.jsonl", content+"\n") }
}

func csvFile(content string) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string { return writeFile(t, dir, "bad.csv", content) }
}

func labels(o *ImportOptions) { o.LabelField = "label" }
func ids(o *ImportOptions)    { o.IDField = "id" }

func TestImportCollectsAllBadRows(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := 1; i <= 15; i++ {
		fmt.Fprintf(&b, "{\"text\": \"good %d\"}\n{\"text\": \"\"}\n", i)
	}
	in := writeFile(t, dir, "many.jsonl", b.String())
	_, err := Import(context.Background(), ImportOptions{Sources: []Source{{Path: in}}, Fractions: hashSplit, Out: filepath.Join(dir, "o.parquet")})
	var res RowErrors
	if !errors.As(err, &res) {
		t.Fatalf("err = %v, want RowErrors", err)
	}
	if len(res) != 15 {
		t.Errorf("%d row errors, want 15", len(res))
	}
	msg := err.Error()
	lines := strings.Split(msg, "\n")
	if lines[0] != "15 bad rows:" || len(lines) != 12 || !strings.HasSuffix(lines[11], "and 5 more") {
		t.Errorf("message:\n%s", msg)
	}
	if want := "  " + in + `:20: field "text": empty text`; lines[10] != want {
		t.Errorf("10th listed error %q, want %q", lines[10], want)
	}
}

func TestImportStopsAtErrorCap(t *testing.T) {
	dir := t.TempDir()
	in := writeFile(t, dir, "all-bad.jsonl", strings.Repeat("{\"body\": \"x\"}\n", maxRowErrors+500))
	_, err := Import(context.Background(), ImportOptions{Sources: []Source{{Path: in}}, Fractions: hashSplit, Out: filepath.Join(dir, "o.parquet")})
	var res RowErrors
	if !errors.As(err, &res) || len(res) != maxRowErrors {
		t.Fatalf("err = %.200v, want RowErrors of %d", err, maxRowErrors)
	}
	if !strings.HasPrefix(err.Error(), fmt.Sprintf("import stopped after %d bad rows", maxRowErrors)) {
		t.Errorf("message %.100q", err.Error())
	}
}

func TestImportSkipInvalid(t *testing.T) {
	dir := t.TempDir()
	in := writeFile(t, dir, "mixed.jsonl", `{"text": "one", "label": "a"}
{"text": ""}
not json
{"text": "two", "label": 2}
{"text": "three", "label": false}
`)
	res, err := Import(context.Background(), ImportOptions{
		Sources: []Source{{Path: in}}, LabelField: "label", Fractions: Fractions{Train: 1}, SkipInvalid: true,
		Out: filepath.Join(dir, "o.parquet"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 2 || res.Invalid != 3 {
		t.Errorf("rows %d invalid %d, want 2 and 3", res.Rows, res.Invalid)
	}
	wantWarn := []string{
		"skipped " + in + `:2: field "text": empty text`,
		"skipped " + in + `:3: invalid JSON: invalid character 'o' in literal null (expecting 'u') (at byte 2)`,
		"skipped " + in + `:5: field "label": label must be a string or number, got boolean`,
		"skipped 3 invalid rows",
	}
	if !slices.Equal(res.Warnings, wantWarn) {
		t.Errorf("warnings\n%q\nwant\n%q", res.Warnings, wantWarn)
	}
	if want := map[string]int64{"a": 1, "2": 1}; !maps.Equal(res.ByLabel, want) {
		t.Errorf("labels %v, want %v", res.ByLabel, want)
	}
}

// TestImportFormats imports the same rows from every supported format.
func TestImportFormats(t *testing.T) {
	type pqRow struct {
		Key   int64   `parquet:"key"`
		Body  string  `parquet:"body"`
		Grade *string `parquet:"grade,optional"`
	}
	type pqNumLabel struct {
		Key   string  `parquet:"key"`
		Body  string  `parquet:"body"`
		Grade float64 `parquet:"grade"`
	}
	const jsonlIn = "{\"key\": 10, \"body\": \"First review\", \"grade\": \"good\"}\n" +
		"\n" + // blank lines are skipped but counted
		"{\"key\": \"x11\", \"body\": \"Second \\\"quoted\\\" review\\n\\u00e9\", \"grade\": null}\r\n" +
		"{\"grade\": 3, \"body\": \"Third\", \"key\": 12, \"extra\": {\"nested\": [1, {\"a\": \"}\"}]}}"
	const csvIn = "\xef\xbb\xbfkey,body,grade\n10,First review,good\n" +
		"x11,\"Second \"\"quoted\"\" review\n\u00e9\",\n12,Third,3\n"
	tests := []struct {
		name       string
		file       func(t *testing.T, dir string) string
		format     string
		wantRows   []int64
		wantLabels []string
		wantIDs    []string
	}{
		{"jsonl", func(t *testing.T, dir string) string { return writeFile(t, dir, "in.jsonl", jsonlIn) }, "",
			[]int64{1, 3, 4}, []string{"good", "", "3"}, []string{"10", "x11", "12"}},
		{"ndjson forced format", func(t *testing.T, dir string) string { return writeFile(t, dir, "in.data", jsonlIn) }, "jsonl",
			[]int64{1, 3, 4}, []string{"good", "", "3"}, []string{"10", "x11", "12"}},
		{"jsonl.gz", func(t *testing.T, dir string) string { return writeGzip(t, dir, "in.jsonl.gz", jsonlIn) }, "",
			[]int64{1, 3, 4}, []string{"good", "", "3"}, []string{"10", "x11", "12"}},
		{"csv", func(t *testing.T, dir string) string { return writeFile(t, dir, "in.csv", csvIn) }, "",
			[]int64{2, 3, 5}, []string{"good", "", "3"}, []string{"10", "x11", "12"}},
		{"csv.gz", func(t *testing.T, dir string) string { return writeGzip(t, dir, "in.csv.gz", csvIn) }, "auto",
			[]int64{2, 3, 5}, []string{"good", "", "3"}, []string{"10", "x11", "12"}},
		{"parquet", func(t *testing.T, dir string) string {
			return writeParquet(t, dir, "in.parquet", []pqRow{
				{10, "First review", ptr("good")}, {11, "Second \"quoted\" review\n\u00e9", nil}, {12, "Third", ptr("3")}})
		}, "", []int64{1, 2, 3}, []string{"good", "", "3"}, []string{"10", "11", "12"}},
		{"parquet numeric label", func(t *testing.T, dir string) string {
			return writeParquet(t, dir, "in.parquet", []pqNumLabel{
				{"10", "First review", 1.5}, {"x11", "Second \"quoted\" review\n\u00e9", 0}, {"12", "Third", 3}})
		}, "parquet", []int64{1, 2, 3}, []string{"1.5", "0", "3"}, []string{"10", "x11", "12"}},
	}
	wantTexts := []string{"First review", "Second \"quoted\" review\n\u00e9", "Third"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in := tc.file(t, dir)
			out := filepath.Join(dir, "out", "ds.parquet")
			res, err := Import(context.Background(), ImportOptions{
				Sources:    []Source{{Path: in, Format: tc.format, Split: "val"}},
				TextField:  "body",
				LabelField: "grade",
				IDField:    "key",
				Out:        out,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Rows != 3 || res.BySplit["val"] != 3 {
				t.Errorf("result %+v", res)
			}
			got, err := ReadExamples(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 {
				t.Fatalf("read %d rows, want 3", len(got))
			}
			for i, e := range got {
				want := Example{ID: tc.wantIDs[i], Text: wantTexts[i], Label: tc.wantLabels[i], Split: "val", Source: filepath.Base(in), Row: tc.wantRows[i]}
				if e != want {
					t.Errorf("row %d:\n got %+v\nwant %+v", i, e, want)
				}
			}
			sum, err := SHA256File(out)
			if err != nil || sum != res.SHA256 {
				t.Errorf("SHA256File = %s, %v; result says %s", sum, err, res.SHA256)
			}
		})
	}
}

func TestImportContentIDsAndDedupe(t *testing.T) {
	dir := t.TempDir()
	in := writeFile(t, dir, "dups.jsonl", `{"text": "Hello  World", "label": "x"}
{"text": "hello world", "label": "y"}
{"text": "  HELLO\tworld\n"}
{"text": "caf\u00e9 au lait"}
{"text": "Cafe\u0301 au  lait"}
{"text": "something else"}
`)
	other := writeFile(t, dir, "more.jsonl", `{"text": "SOMETHING ELSE"}
{"text": "new text"}
`)
	run := func(dedupe bool) (ImportResult, []Example) {
		out := filepath.Join(dir, fmt.Sprintf("out-%v.parquet", dedupe))
		res, err := Import(context.Background(), ImportOptions{
			Sources: []Source{{Path: in}, {Path: other}}, LabelField: "label",
			Fractions: hashSplit, Seed: "s", Dedupe: dedupe, Out: out,
		})
		if err != nil {
			t.Fatal(err)
		}
		ex, err := ReadExamples(out)
		if err != nil {
			t.Fatal(err)
		}
		return res, ex
	}
	res, ex := run(true)
	if res.Rows != 4 || res.Duplicates != 4 {
		t.Errorf("dedupe: rows %d duplicates %d, want 4 and 4", res.Rows, res.Duplicates)
	}
	type key struct {
		src string
		row int64
	}
	var kept []key
	for _, e := range ex {
		kept = append(kept, key{e.Source, e.Row})
		if want := "h" + sha256Hex(Normalize(e.Text))[:16]; e.ID != want {
			t.Errorf("row %d: id %s, want %s", e.Row, e.ID, want)
		}
	}
	if want := []key{{"dups.jsonl", 1}, {"dups.jsonl", 4}, {"dups.jsonl", 6}, {"more.jsonl", 2}}; !slices.Equal(kept, want) {
		t.Errorf("kept %v, want %v (first occurrence wins)", kept, want)
	}
	if ex[0].Label != "x" {
		t.Errorf("kept label %q, want the first row's", ex[0].Label)
	}

	res, ex = run(false)
	if res.Rows != 8 || res.Duplicates != 0 {
		t.Errorf("no dedupe: rows %d duplicates %d, want 8 and 0", res.Rows, res.Duplicates)
	}
	if ex[0].ID != ex[1].ID || ex[0].ID != ex[2].ID || ex[3].ID != ex[4].ID || ex[0].ID == ex[3].ID {
		t.Errorf("content ids: %v %v %v %v %v", ex[0].ID, ex[1].ID, ex[2].ID, ex[3].ID, ex[4].ID)
	}
	if ex[0].Split != ex[1].Split || ex[5].Split != ex[6].Split {
		t.Errorf("identical texts in different splits")
	}
	if !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.HasPrefix(w, "4 rows repeat the text of an earlier row") }) {
		t.Errorf("warnings %q lack the repeated-text warning", res.Warnings)
	}
}

func TestImportFixedSplits(t *testing.T) {
	dir := t.TempDir()
	var train, test strings.Builder
	for i := range 50 {
		fmt.Fprintf(&train, "{\"text\": \"train row %d\"}\n", i)
		fmt.Fprintf(&test, "{\"text\": \"test row %d\"}\n", i)
	}
	fmt.Fprintf(&test, "{\"text\": \"Train row 7\"}\n") // overlaps train
	trainPath := writeFile(t, dir, "train.jsonl", train.String())
	testPath := writeFile(t, dir, "test.jsonl", test.String())
	out := filepath.Join(dir, "ds.parquet")
	// No Fractions needed when every source has a fixed split.
	res, err := Import(context.Background(), ImportOptions{
		Sources: []Source{{Path: trainPath, Split: "train"}, {Path: testPath, Split: "test"}},
		Out:     out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"train": 50, "test": 51}; !maps.Equal(res.BySplit, want) {
		t.Errorf("by split %v, want %v", res.BySplit, want)
	}
	if !slices.Contains(res.Warnings, "1 text appears in more than one split (fixed-split sources overlap); set Dedupe to keep only the first") {
		t.Errorf("warnings %q lack the overlap warning", res.Warnings)
	}
	test2, err := ReadSplit(out, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range test2 {
		if e.Source != "test.jsonl" || e.Split != "test" {
			t.Fatalf("test split holds %+v", e)
		}
	}
	if len(test2) != 51 {
		t.Errorf("ReadSplit(test) = %d rows", len(test2))
	}
	if _, err := ReadSplit(out, "dev"); err == nil || !strings.Contains(err.Error(), `unknown split "dev"`) {
		t.Errorf("ReadSplit(dev) err = %v", err)
	}

	// A hash-split source needs valid fractions; a bad fixed split is refused.
	for _, tc := range []struct {
		opts ImportOptions
		want string
	}{
		{ImportOptions{Sources: []Source{{Path: trainPath}}, Out: out}, "import: split fractions: train 0 + val 0 + test 0 = 0, want 1"},
		{ImportOptions{Sources: []Source{{Path: trainPath}}, Fractions: Fractions{1.2, -0.2, 0}, Out: out}, "import: split fractions: train fraction 1.2 is not in [0,1]"},
		{ImportOptions{Sources: []Source{{Path: trainPath, Split: "dev"}}, Out: out}, `import: ` + trainPath + `: unknown split "dev" (want train, val or test, or empty to split by hash)`},
		{ImportOptions{Sources: []Source{{Path: trainPath, Split: "train"}}, Out: trainPath}, "import: output " + trainPath + " is also an input"},
		{ImportOptions{Out: out}, "import: no sources"},
	} {
		if _, err := Import(context.Background(), tc.opts); err == nil || err.Error() != tc.want {
			t.Errorf("err = %v\nwant %s", err, tc.want)
		}
	}
}

// TestImportSplitsStableWhenRowsAdded re-imports a grown file: no row that
// was there before may change split, and the output is deterministic.
func TestImportSplitsStableWhenRowsAdded(t *testing.T) {
	dir := t.TempDir()
	row := func(i int) string { return fmt.Sprintf("{\"id\": \"r%d\", \"text\": \"review number %d\"}\n", i, i) }
	var small, big strings.Builder
	for i := range 2000 {
		small.WriteString(row(i))
	}
	for i := -500; i < 3000; i++ { // new rows before, after and (by position) around the old ones
		big.WriteString(row(i))
	}
	imp := func(name, content string) (ImportResult, map[string]string) {
		in := writeFile(t, dir, name+".jsonl", content)
		res, err := Import(context.Background(), ImportOptions{Sources: []Source{{Path: in}}, IDField: "id", Fractions: hashSplit, Seed: "seed-1", Out: filepath.Join(dir, name+".parquet")})
		if err != nil {
			t.Fatal(err)
		}
		ex, err := ReadExamples(res.Out)
		if err != nil {
			t.Fatal(err)
		}
		splits := map[string]string{}
		for _, e := range ex {
			splits[e.ID] = e.Split
		}
		return res, splits
	}
	resA, a := imp("small", small.String())
	_, b := imp("big", big.String())
	for id, s := range a {
		if b[id] != s {
			t.Errorf("%s moved from %s to %s when rows were added", id, s, b[id])
		}
	}
	resA2, _ := imp("small", small.String())
	if resA.SHA256 != resA2.SHA256 {
		t.Errorf("re-import changed the file: %s vs %s", resA.SHA256, resA2.SHA256)
	}
	for _, s := range Splits {
		if n := resA.BySplit[s]; n == 0 {
			t.Errorf("split %s empty", s)
		}
	}
}

func TestImportCancel(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := range 30000 {
		fmt.Fprintf(&b, "{\"text\": \"row %d\"}\n", i)
	}
	in := writeFile(t, dir, "in.jsonl", b.String())
	out := filepath.Join(dir, "o.parquet")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Import(ctx, ImportOptions{Sources: []Source{{Path: in}}, Fractions: hashSplit, Out: out}); !errors.Is(err, context.Canceled) {
		t.Errorf("pre-cancelled: err = %v", err)
	}
	mustNotExist(t, out)

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	var calls []int64
	_, err := Import(ctx, ImportOptions{Sources: []Source{{Path: in}}, Fractions: hashSplit, Out: out, Progress: func(n int64) {
		calls = append(calls, n)
		cancel()
	}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled mid-way: err = %v", err)
	}
	if len(calls) != 1 || calls[0] != progressEvery {
		t.Errorf("progress calls %v", calls)
	}
	mustNotExist(t, out)

	calls = nil
	res, err := Import(context.Background(), ImportOptions{Sources: []Source{{Path: in}}, Fractions: hashSplit, Out: out, Progress: func(n int64) { calls = append(calls, n) }})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{10000, 20000, 30000, 30000}; !slices.Equal(calls, want) || res.Rows != 30000 {
		t.Errorf("progress calls %v, want %v", calls, want)
	}
}

func TestImportNoRows(t *testing.T) {
	dir := t.TempDir()
	in := writeFile(t, dir, "empty.jsonl", "\n\n")
	out := filepath.Join(dir, "o.parquet")
	_, err := Import(context.Background(), ImportOptions{Sources: []Source{{Path: in}}, Fractions: hashSplit, Out: out})
	if err == nil || !strings.Contains(err.Error(), "no rows to write") {
		t.Errorf("err = %v", err)
	}
	mustNotExist(t, out)
}

// TestImportFineFoods imports the vendored sample data.
func TestImportFineFoods(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "fine-foods.parquet")
	res, err := Import(context.Background(), ImportOptions{
		Sources: []Source{
			{Path: "../data/fine-foods/train.jsonl"},
			{Path: "../data/fine-foods/test.jsonl", Split: "test"},
		},
		LabelField: "label",
		IDField:    "id",
		Fractions:  Fractions{Train: 0.9, Val: 0.1},
		Seed:       "fine-foods",
		Out:        out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 5000 || res.Invalid != 0 || res.Duplicates != 0 {
		t.Errorf("rows %d invalid %d duplicates %d", res.Rows, res.Invalid, res.Duplicates)
	}
	if res.BySplit["test"] != 1000 || res.BySplit["train"]+res.BySplit["val"] != 4000 {
		t.Errorf("by split %v", res.BySplit)
	}
	if v := float64(res.BySplit["val"]) / 4000; v < 0.08 || v > 0.12 {
		t.Errorf("val share %.3f, want about 0.1", v)
	}
	if got := slices.Sorted(maps.Keys(res.ByLabel)); !slices.Equal(got, []string{"great", "other"}) || res.ByLabel["great"]+res.ByLabel["other"] != 5000 {
		t.Errorf("labels %v", res.ByLabel)
	}
	ex, err := ReadExamples(out)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, e := range ex {
		ids[e.ID] = true
	}
	if len(ex) != 5000 || len(ids) != 5000 {
		t.Errorf("%d rows with %d distinct ids", len(ex), len(ids))
	}
	if e := ex[0]; e.ID != "train-00000" || e.Source != "train.jsonl" || e.Row != 1 || e.Label != "other" {
		t.Errorf("first row %+v", e)
	}
	st, err := ComputeStats(out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Rows != 5000 || !maps.Equal(st.BySplit, res.BySplit) || !maps.Equal(st.ByLabel, res.ByLabel) {
		t.Errorf("stats %+v disagree with import %+v", st, res)
	}
}
