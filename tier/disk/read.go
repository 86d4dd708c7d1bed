package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"time"
)

const (
	// readBufferSize holds a record's fixed part and the longest key, so
	// that keys are turned into strings straight from the buffer.
	readBufferSize = 256 << 10
	// bufferedValueLen is the largest value copied out of the read buffer;
	// longer values are read straight into their own slice.
	bufferedValueLen = 64 << 10
	// unknownSizePrealloc bounds the records preallocated from the header's
	// count when the size of the input is not known.
	unknownSizePrealloc = 4096
)

// Read reads a whole snapshot from r, up to and including its end, and
// returns its records in the order they were written, without those
// expired at now. A zero now drops nothing.
//
// A damaged snapshot is reported as a [*CorruptError] (with an empty Path),
// a newer format version as [ErrUnsupportedVersion]; errors from r other
// than io.EOF are returned wrapped. No records are returned with an error.
//
// When r has a Len method (bytes.Reader, bytes.Buffer, strings.Reader), Read
// uses it to reject impossible lengths before reading further.
func Read(r io.Reader, now time.Time) ([]Record, error) {
	return limits{}.readRecords(r, now)
}

func (l limits) readRecords(r io.Reader, now time.Time) ([]Record, error) {
	size := int64(-1)
	if n, ok := r.(interface{ Len() int }); ok {
		size = int64(n.Len())
	}
	return l.readSnapshot(r, size, now, "")
}

// decoder is a buffered reader that keeps a running CRC-32C of the bytes
// consumed. The checksum is updated lazily, over whole stretches of the
// buffer, when the buffer is refilled, rather than once per field.
type decoder struct {
	src  io.Reader
	buf  []byte
	r, w int   // buf[r:w] is read from src but not yet consumed
	sum  int   // buf[:sum] is already in crc; buf[sum:r] is consumed but not yet
	base int64 // offset in the snapshot of buf[0]
	crc  uint32
}

// pos is the offset in the snapshot of the next byte to consume.
func (d *decoder) pos() int64 { return d.base + int64(d.r) }

// fold adds the consumed bytes to the checksum.
func (d *decoder) fold() {
	d.crc = crc32.Update(d.crc, castagnoli, d.buf[d.sum:d.r])
	d.sum = d.r
}

// need makes sure that buf[r:r+n] holds the next n bytes.
func (d *decoder) need(n int) error {
	if d.w-d.r >= n {
		return nil
	}
	d.fold()
	if n > len(d.buf) {
		// Only a snapshot of known, small size starts with a short buffer;
		// callers bound n, so this grows at most to readBufferSize.
		nb := make([]byte, max(n, 2*len(d.buf)))
		d.w = copy(nb, d.buf[d.r:d.w])
		d.buf = nb
	} else {
		d.w = copy(d.buf, d.buf[d.r:d.w])
	}
	d.base += int64(d.r)
	d.r, d.sum = 0, 0
	m, err := io.ReadAtLeast(d.src, d.buf[d.w:], n-d.w)
	d.w += m
	if err != nil {
		return d.readError(err)
	}
	return nil
}

// readError turns an error from src into a corruption (the snapshot ends
// early) or an I/O error.
func (d *decoder) readError(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corruptf("truncated: the snapshot ends after %d bytes", d.base+int64(d.w))
	}
	return fmt.Errorf("disk: read snapshot: %w", err)
}

// skip consumes n bytes, for records that are dropped.
func (d *decoder) skip(n int) error {
	for n > 0 {
		if d.w == d.r {
			if err := d.need(min(n, len(d.buf))); err != nil {
				return err
			}
		}
		k := min(n, d.w-d.r)
		d.r += k
		n -= k
	}
	return nil
}

// value consumes the next n bytes into a new slice. The caller has checked
// n against the limits and, when the size is known, against the bytes that
// remain. When the size is not known, the slice grows as bytes arrive, so
// a length that lies costs at most about twice what was really read.
func (d *decoder) value(n int, sizeKnown bool) ([]byte, error) {
	if n <= bufferedValueLen || n <= d.w-d.r {
		if err := d.need(n); err != nil {
			return nil, err
		}
		v := make([]byte, n)
		copy(v, d.buf[d.r:])
		d.r += n
		return v, nil
	}
	c := n
	if !sizeKnown {
		c = min(n, max(d.w-d.r, readBufferSize))
	}
	v := append(make([]byte, 0, c), d.buf[d.r:d.w]...)
	d.r = d.w
	d.fold()
	for len(v) < n {
		if len(v) == cap(v) {
			v = slices.Grow(v, min(cap(v), n-len(v)))
		}
		chunk := v[len(v):min(cap(v), n)]
		m, err := io.ReadFull(d.src, chunk)
		d.crc = crc32.Update(d.crc, castagnoli, chunk[:m])
		d.base += int64(m)
		v = v[:len(v)+m]
		if err != nil {
			return nil, d.readError(err)
		}
	}
	return v, nil
}

// readSnapshot decodes a snapshot from src. size is the number of bytes src holds,
// or -1 when it is not known. path only names the file in errors.
func (l limits) readSnapshot(src io.Reader, size int64, now time.Time, path string) ([]Record, error) {
	bufLen := readBufferSize
	if size >= 0 && size < readBufferSize {
		// One more byte than the file, to see its end without a second read.
		bufLen = int(max(size+1, headerLen))
	}
	d := &decoder{src: src, buf: make([]byte, bufLen)}

	// The version-independent prefix.
	if err := d.need(prefixLen); err != nil {
		return nil, err
	}
	p := d.buf[d.r : d.r+prefixLen]
	if [8]byte(p[:8]) != magic {
		return nil, corruptf("wrong magic bytes %q: not a snapshot", p[:8])
	}
	version := binary.LittleEndian.Uint32(p[8:])
	if got, want := crc32.Checksum(p[:12], castagnoli), binary.LittleEndian.Uint32(p[12:]); got != want {
		return nil, corruptf("header checksum mismatch: stored %#08x, computed %#08x", want, got)
	}
	switch {
	case version > Version:
		name := path
		if name == "" {
			name = "snapshot"
		}
		return nil, fmt.Errorf("%w: %s is format version %d, this release reads version %d", ErrUnsupportedVersion, name, version, Version)
	case version != Version:
		return nil, corruptf("format version %d was never written", version)
	}
	d.r += prefixLen

	// The rest of the version 1 header.
	if err := d.need(headerLen - prefixLen); err != nil {
		return nil, err
	}
	count := binary.LittleEndian.Uint64(d.buf[d.r+8:])
	d.r += headerLen - prefixLen
	prealloc := min(count, unknownSizePrealloc)
	if size >= 0 {
		body := size - headerLen - trailerLen
		if body < 0 {
			return nil, corruptf("truncated: %d bytes is too short for a snapshot", size)
		}
		if count > uint64(body/recordHeadLen) {
			return nil, corruptf("record count %d cannot fit in %d bytes", count, body)
		}
		prealloc = count
	}

	maxValue := l.maxValue()
	nowNs := nowNanos(now)
	recs := make([]Record, 0, prealloc)
	for i := uint64(0); i < count; i++ {
		if err := d.need(recordHeadLen); err != nil {
			return nil, err
		}
		h := d.buf[d.r : d.r+recordHeadLen]
		keyLen := binary.LittleEndian.Uint32(h[0:])
		valueLen := binary.LittleEndian.Uint32(h[4:])
		expiry := int64(binary.LittleEndian.Uint64(h[8:]))
		flags := h[16]
		at := d.pos()
		d.r += recordHeadLen

		if keyLen > MaxKeyLen {
			return nil, corruptf("record %d at byte %d: key length %d is over the maximum %d", i, at, keyLen, MaxKeyLen)
		}
		if uint64(valueLen) > maxValue {
			return nil, corruptf("record %d at byte %d: value length %d is over the maximum %d", i, at, valueLen, maxValue)
		}
		if size >= 0 && int64(keyLen)+int64(valueLen) > size-trailerLen-d.pos() {
			return nil, corruptf("record %d at byte %d: key and value (%d+%d bytes) run past the end of the snapshot", i, at, keyLen, valueLen)
		}

		if expiry != noExpiry && expiry <= nowNs {
			if err := d.skip(int(keyLen) + int(valueLen)); err != nil {
				return nil, err
			}
			continue
		}
		if err := d.need(int(keyLen)); err != nil {
			return nil, err
		}
		key := string(d.buf[d.r : d.r+int(keyLen)])
		d.r += int(keyLen)
		value, err := d.value(int(valueLen), size >= 0)
		if err != nil {
			return nil, err
		}
		recs = append(recs, Record{Key: key, Value: value, ExpiresAt: decodeExpiry(expiry), Flags: flags})
	}

	d.fold()
	if err := d.need(trailerLen); err != nil {
		return nil, err
	}
	stored := binary.LittleEndian.Uint32(d.buf[d.r:])
	d.r += trailerLen
	d.sum = d.r // the checksum does not cover itself
	if stored != d.crc {
		return nil, corruptf("checksum mismatch: stored %#08x, computed %#08x", stored, d.crc)
	}
	end := d.pos()
	switch err := d.need(1); {
	case err == nil:
		return nil, corruptf("unexpected bytes after the checksum at byte %d", end)
	case !errors.Is(err, ErrCorrupt):
		return nil, err // an I/O error while looking for the end
	}
	return recs, nil
}
