package agentcache

import (
	"encoding/json"
	"errors"

	"github.com/agentcache/agentcache-go/internal/keyspace"
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

// L2 values travel in the envelope of package internal/keyspace.
const (
	envHeader     = keyspace.HeaderLen
	kindValue     = keyspace.KindValue
	kindMissing   = keyspace.KindNotFound
	kindTombstone = keyspace.KindTombstone
)

var errBadEnvelope = errors.New("agentcache: undecodable L2 value")
