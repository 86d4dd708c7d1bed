package disk

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"iter"
	"time"
)

// writeBufferSize is large enough that the checksum and the writes to the
// file work on big blocks rather than on one record at a time.
const writeBufferSize = 256 << 10

// Write writes a snapshot of records to w and returns the number of records
// written.
//
// It drains records before it writes anything, and fails without writing a
// byte if a key is longer than [MaxKeyLen] or a value longer than
// [MaxValueLen]. On a write error n is 0 and what reached w is not a valid
// snapshot.
func Write(w io.Writer, records iter.Seq[Record]) (n int, err error) {
	return limits{}.writeRecords(w, records)
}

func (l limits) writeRecords(w io.Writer, records iter.Seq[Record]) (n int, err error) {
	recs, err := l.collect(records)
	if err != nil {
		return 0, err
	}
	if err := writeSnapshot(w, recs, time.Now()); err != nil {
		return 0, err
	}
	return recs.n, nil
}

// entry is a record as collect keeps it until it is written: smaller than
// a Record, whose time.Time is 24 bytes.
type entry struct {
	key    string
	value  []byte
	expiry int64
	flags  uint8
}

// chunkLen is the number of entries per chunk. collect fills fixed-size
// chunks rather than one growing slice, so that a million entries are never
// copied on growth and cost their size once.
const chunkLen = 4096

// collected is what collect gathered, in the iterator's order.
type collected struct {
	chunks [][]entry
	n      int
}

// collect drains records and checks every record against the limits.
func (l limits) collect(records iter.Seq[Record]) (collected, error) {
	maxValue := l.maxValue()
	var all collected
	var chunk []entry // the first chunk grows by append: small snapshots stay small
	for r := range records {
		if len(r.Key) > MaxKeyLen {
			return collected{}, fmt.Errorf("disk: record %d: key is %d bytes, more than the maximum %d", all.n, len(r.Key), MaxKeyLen)
		}
		if uint64(len(r.Value)) > maxValue {
			return collected{}, fmt.Errorf("disk: record %d: value is %d bytes, more than the maximum %d", all.n, len(r.Value), maxValue)
		}
		if len(chunk) == chunkLen {
			all.chunks = append(all.chunks, chunk)
			chunk = make([]entry, 0, chunkLen)
		}
		chunk = append(chunk, entry{key: r.Key, value: r.Value, expiry: encodeExpiry(r.ExpiresAt), flags: r.Flags})
		all.n++
	}
	if len(chunk) > 0 {
		all.chunks = append(all.chunks, chunk)
	}
	return all, nil
}

// writeSnapshot writes recs, already checked by collect, to w.
func writeSnapshot(w io.Writer, recs collected, created time.Time) error {
	// The checksum sees each block on its way from the buffer to w, so it is
	// computed over large slices rather than once per field.
	sum := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, sum), writeBufferSize)

	var scratch [headerLen]byte
	bw.Write(appendHeader(scratch[:0], created, uint64(recs.n)))
	for _, chunk := range recs.chunks {
		for i := range chunk {
			e := &chunk[i]
			h := scratch[:recordHeadLen]
			binary.LittleEndian.PutUint32(h[0:], uint32(len(e.key)))
			binary.LittleEndian.PutUint32(h[4:], uint32(len(e.value)))
			binary.LittleEndian.PutUint64(h[8:], uint64(e.expiry))
			h[16] = e.flags
			bw.Write(h)
			bw.WriteString(e.key)
			// bufio.Writer keeps the first error and turns every later
			// write into a no-op, so checking once per record is enough.
			if _, err := bw.Write(e.value); err != nil {
				return fmt.Errorf("disk: write snapshot: %w", err)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("disk: write snapshot: %w", err)
	}
	if _, err := w.Write(binary.LittleEndian.AppendUint32(scratch[:0], sum.Sum32())); err != nil {
		return fmt.Errorf("disk: write snapshot: %w", err)
	}
	return nil
}
