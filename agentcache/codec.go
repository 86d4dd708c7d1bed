package agentcache

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"
)

// Codec turns values into the bytes stored in L2 and back. L1 holds values
// as they are, so a Codec runs only on L2 reads and writes and snapshots.
// Implementations must be safe for concurrent use.
type Codec interface {
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into v, a non-nil pointer.
	Unmarshal(data []byte, v any) error
}

// JSON is the default Codec: encoding/json. It is slow next to a binary
// codec but readable with redis-cli and tolerant of added fields.
type JSON struct{}

// Marshal implements Codec.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal implements Codec.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// The envelope every L2 value travels in:
//
//	byte 0      magic 0xAC
//	byte 1      format version (1)
//	byte 2      kind: 1 value, 2 "not found" marker
//	bytes 3-10  fresh until, Unix milliseconds, big endian (0: no expiry)
//	bytes 11-   payload (the Codec's bytes; empty for a marker)
//
// The freshness time lets an instance that reads the entry give its L1 copy
// the same remaining life, and lets a later stale window tell fresh from
// stale. Anything that does not parse is treated as a miss and deleted.
const (
	envMagic    = 0xAC
	envVersion  = 1
	envHeader   = 11
	kindValue   = 1
	kindMissing = 2
)

var errBadEnvelope = errors.New("agentcache: undecodable L2 value")

func appendEnvelope(dst []byte, kind byte, freshUntil time.Time, payload []byte) []byte {
	var ms int64
	if !freshUntil.IsZero() {
		ms = freshUntil.UnixMilli()
	}
	dst = append(dst, envMagic, envVersion, kind)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ms))
	return append(dst, payload...)
}

// openEnvelope returns the kind, freshness and payload of an L2 value.
func openEnvelope(b []byte) (kind byte, freshUntil time.Time, payload []byte, err error) {
	if len(b) < envHeader || b[0] != envMagic || b[1] != envVersion {
		return 0, time.Time{}, nil, errBadEnvelope
	}
	kind = b[2]
	if kind != kindValue && kind != kindMissing {
		return 0, time.Time{}, nil, errBadEnvelope
	}
	if ms := int64(binary.BigEndian.Uint64(b[3:11])); ms != 0 {
		freshUntil = time.UnixMilli(ms)
	}
	return kind, freshUntil, b[envHeader:], nil
}
