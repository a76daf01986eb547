package distill

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Record is one paid answer, as the journal keeps it.
type Record struct {
	Key      string   `json:"key"`
	Response Response `json:"response"`
	CostUSD  float64  `json:"cost_usd"`
}

// Journal is an append-only JSON-lines file of paid answers, fsynced before
// Append returns: whatever was paid for survives a crash. Appends from many
// goroutines share fsyncs (group commit).
type Journal struct {
	f     *os.File
	off   int64 // end of the records
	alloc int64 // file space reserved so far (see preallocate)
	reqs  chan journalReq
	done  chan struct{}
	close sync.Once
}

type journalReq struct {
	line []byte
	errc chan error
}

// OpenJournal loads the records of path (dropping a torn last line left by
// a crash) and opens it for appending.
func OpenJournal(path string) (*Journal, map[string]Record, error) {
	recs, good, err := readJournal(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("journal %s: %w", path, err)
	}
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("journal %s: %w", path, err)
	}
	j := &Journal{f: f, off: good, alloc: good, reqs: make(chan journalReq, 256), done: make(chan struct{})}
	go j.loop()
	return j, recs, nil
}

// ReadJournal loads a journal's records without opening it for writing, to
// reuse answers an earlier run paid for.
func ReadJournal(path string) (map[string]Record, error) {
	recs, _, err := readJournal(path)
	return recs, err
}

func readJournal(path string) (map[string]Record, int64, error) {
	recs := map[string]Record{}
	f, err := os.Open(path)
	if err != nil {
		return recs, 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var good int64
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var rec Record
			if jerr := json.Unmarshal(bytes.TrimSpace(line), &rec); jerr != nil || rec.Key == "" {
				return recs, good, nil // corrupt tail: keep what came before
			}
			recs[rec.Key] = rec
			good += int64(len(line))
		}
		if err == io.EOF {
			return recs, good, nil
		}
		if err != nil {
			return recs, good, fmt.Errorf("journal %s: %w", path, err)
		}
	}
}

// Append writes a record and returns once it is on disk.
func (j *Journal) Append(rec Record) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	errc := make(chan error, 1)
	j.reqs <- journalReq{line: append(line, '\n'), errc: errc}
	return <-errc
}

// loop writes queued records, one fsync per group.
func (j *Journal) loop() {
	defer close(j.done)
	for first := range j.reqs {
		group := []journalReq{first}
	drain:
		for {
			select {
			case r, ok := <-j.reqs:
				if !ok {
					break drain
				}
				group = append(group, r)
			default:
				break drain
			}
		}
		var buf bytes.Buffer
		for _, r := range group {
			buf.Write(r.line)
		}
		err := j.write(buf.Bytes())
		for _, r := range group {
			r.errc <- err
		}
	}
}

// journalChunk is how much file space the journal reserves at a time.
const journalChunk = 4 << 20

// write appends data durably. Writing into space reserved ahead (zeros
// past the records, which a reader takes for a torn tail) lets a
// data-only sync skip the file-size update that an append would need.
func (j *Journal) write(data []byte) error {
	if end := j.off + int64(len(data)); end > j.alloc {
		j.alloc = preallocate(j.f, j.alloc, max(end, j.alloc+journalChunk))
	}
	if _, err := j.f.WriteAt(data, j.off); err != nil {
		return err
	}
	j.off += int64(len(data))
	if j.off > j.alloc {
		return j.f.Sync() // no space reserved: the size changed
	}
	return syncData(j.f)
}

// Close stops the journal after pending appends and trims the reserved
// space.
func (j *Journal) Close() error {
	j.close.Do(func() { close(j.reqs) })
	<-j.done
	err := j.f.Truncate(j.off)
	if err == nil {
		err = j.f.Sync()
	}
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	return err
}
