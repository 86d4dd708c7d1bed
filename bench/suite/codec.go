package suite

import (
	gojson "github.com/goccy/go-json"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/codec/cbor"
)

// namedCodec is a codec offered through agentcache.Options.Codec, with the
// name its rows carry.
type namedCodec struct {
	name  string
	codec agentcache.Codec
}

// fastCodecs are the codecs batch_100_l2 measures besides the default
// (agentcache.JSON): each gets a Batch.GetMany row against a raw MGET of its
// own bytes, and the fastest of them carries the budget "≤ 1.5× raw MGET".
// A codec is measured by adding its line here.
var fastCodecs = []namedCodec{
	{"goccy/go-json", goccyJSON{}},
	{"codec/cbor", cbor.Codec{}},
}

// goccyJSON adapts github.com/goccy/go-json, a drop-in encoding/json
// replacement, to agentcache.Codec: the fastest JSON a user could plug in,
// next to the binary codec that ships (codec/cbor). The suite's payload
// (Product) has no time.Time, so it needs none of agentcache.JSON's zone
// handling to keep the fidelity contract here.
type goccyJSON struct{}

func (goccyJSON) Marshal(v any) ([]byte, error)   { return gojson.Marshal(v) }
func (goccyJSON) Unmarshal(b []byte, v any) error { return gojson.Unmarshal(b, v) }
