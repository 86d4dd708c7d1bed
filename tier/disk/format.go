package disk

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"time"
)

// Record is one cache entry in a snapshot.
type Record struct {
	Key string
	// Value is the encoded value. Write does not copy it: the caller must
	// not modify it until Write or Save returns. Read never returns a nil
	// Value (an empty value is an empty, non-nil slice).
	Value []byte
	// ExpiresAt is when the entry expires; the zero time means never.
	ExpiresAt time.Time
	// Flags is opaque to this package and kept as is (the cache marks, for
	// example, negative entries).
	Flags uint8
}

const (
	// MaxKeyLen is the largest key, in bytes, a snapshot can hold.
	MaxKeyLen = 64 << 10
	// MaxValueLen is the largest value, in bytes, a snapshot can hold: Write
	// refuses a longer one and Read takes a longer length for corruption.
	MaxValueLen = 64 << 20
	// Version is the format version this package writes. It reads this
	// version only.
	Version = 1
)

// ErrCorrupt is matched (with errors.Is) by every error that reports a
// damaged snapshot.
var ErrCorrupt = errors.New("disk: snapshot is corrupt")

// ErrUnsupportedVersion is matched (with errors.Is) by the error that
// reports a snapshot in a format version newer than [Version], written by a
// newer release. The file is intact; this release cannot read it.
var ErrUnsupportedVersion = errors.New("disk: unsupported snapshot format version")

// limits are the bounds a read or write checks lengths against. The
// package's functions use the zero limits, which are the defaults; tests
// set a small value limit to exercise it.
type limits struct {
	// maxValueLen is the largest value, in bytes, that a write accepts and
	// a read believes. Zero (or less) means MaxValueLen; it is capped at
	// maxValueLenCap.
	maxValueLen int
}

// maxValueLenCap is the largest value length the format holds (4 GiB − 1),
// and on 32-bit platforms the largest one an int can add a key length to
// (2 GiB − 64 KiB − 1).
var maxValueLenCap = min(uint64(math.MaxUint32), uint64(math.MaxInt)-MaxKeyLen)

func (l limits) maxValue() uint64 {
	switch {
	case l.maxValueLen <= 0:
		return MaxValueLen
	case uint64(l.maxValueLen) > maxValueLenCap:
		return maxValueLenCap
	default:
		return uint64(l.maxValueLen)
	}
}

// magic opens every snapshot. The high first byte catches a transfer that
// strips the eighth bit; the final newline catches line-ending conversion.
var magic = [8]byte{0x89, 'A', 'C', 'S', 'N', 'A', 'P', '\n'}

const (
	prefixLen     = 16 // magic, version, prefix checksum: stable across versions
	headerLen     = 32 // prefix, creation time, record count
	recordHeadLen = 17 // key length, value length, expiry, flags
	trailerLen    = 4  // CRC-32C
	noExpiry      = math.MinInt64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	minExpiry = time.Unix(0, math.MinInt64+1)
	maxExpiry = time.Unix(0, math.MaxInt64)
)

// encodeExpiry maps t to the int64 stored in a record. Times outside the
// range of UnixNano are clamped into it; the clamp stays clear of noExpiry
// so that a long-expired entry never comes back as one that never expires.
func encodeExpiry(t time.Time) int64 {
	switch {
	case t.IsZero():
		return noExpiry
	case t.Before(minExpiry):
		return math.MinInt64 + 1
	case t.After(maxExpiry):
		return math.MaxInt64
	default:
		return t.UnixNano()
	}
}

func decodeExpiry(ns int64) time.Time {
	if ns == noExpiry {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// nowNanos is now in Unix nanoseconds, clamped like an expiry. A zero now
// clamps below every stored expiry, so nothing is dropped.
func nowNanos(now time.Time) int64 {
	switch {
	case now.Before(minExpiry):
		return math.MinInt64
	case now.After(maxExpiry):
		return math.MaxInt64
	default:
		return now.UnixNano()
	}
}

func appendHeader(b []byte, created time.Time, count uint64) []byte {
	b = append(b, magic[:]...)
	b = binary.LittleEndian.AppendUint32(b, Version)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[len(b)-12:], castagnoli))
	b = binary.LittleEndian.AppendUint64(b, uint64(nowNanos(created)))
	b = binary.LittleEndian.AppendUint64(b, count)
	return b
}
