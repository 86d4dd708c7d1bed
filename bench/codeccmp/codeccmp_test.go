package codeccmp

// The measurement behind the choice of CBOR over msgpack (see codec/cbor's
// package documentation): Marshal and then Unmarshal of the bench suite's payload,
// one product and a result of 100 of them, through cbor.Codec, through
// each library as configured for the fidelity contract, through each with
// its defaults, and through agentcache.JSON for reference.
//
//	cd bench && go test -run '^$' -bench . -benchmem ./codeccmp

import (
	"bytes"
	"strconv"
	"testing"

	fxcbor "github.com/fxamacker/cbor/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/codec/cbor"
)

// product has the shape of the bench suite's payload (bench/suite.Product),
// about 150 bytes as JSON.
type product struct {
	ID    int      `json:"id" msgpack:"id"`
	SKU   string   `json:"sku" msgpack:"sku"`
	Name  string   `json:"name" msgpack:"name"`
	Price float64  `json:"price" msgpack:"price"`
	Stock int      `json:"stock" msgpack:"stock"`
	Tags  []string `json:"tags" msgpack:"tags"`
}

func newProduct(id int) *product {
	return &product{
		ID:    id,
		SKU:   "SKU-" + strconv.Itoa(100000+id),
		Name:  "Ergonomic widget, model " + strconv.Itoa(id),
		Price: 19.99 + float64(id%100),
		Stock: id % 37,
		Tags:  []string{"widgets", "office", "blue"},
	}
}

func batchOf(n int) []product {
	out := make([]product, n)
	for i := range out {
		out[i] = *newProduct(i)
	}
	return out
}

// msgpackFaithful is msgpack as it would have to be set up for the
// contract: sorted map keys (deterministic bytes), json tags honoured.
type msgpackFaithful struct{}

func (msgpackFaithful) Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	enc.SetCustomStructTag("json")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (msgpackFaithful) Unmarshal(b []byte, v any) error {
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	dec.SetCustomStructTag("json")
	dec.SetMapDecoder(func(d *msgpack.Decoder) (any, error) { return d.DecodeMap() })
	return dec.Decode(v)
}

type msgpackDefault struct{}

func (msgpackDefault) Marshal(v any) ([]byte, error)   { return msgpack.Marshal(v) }
func (msgpackDefault) Unmarshal(b []byte, v any) error { return msgpack.Unmarshal(b, v) }

type cborDefault struct{}

func (cborDefault) Marshal(v any) ([]byte, error)   { return fxcbor.Marshal(v) }
func (cborDefault) Unmarshal(b []byte, v any) error { return fxcbor.Unmarshal(b, v) }

var benchCodecs = []struct {
	name  string
	codec agentcache.Codec
}{
	{"codec_cbor", cbor.Codec{}},
	{"msgpack_faithful", msgpackFaithful{}},
	{"cbor_default", cborDefault{}},
	{"msgpack_default", msgpackDefault{}},
	{"agentcache_JSON", agentcache.JSON{}},
}

func benchRoundTrip[T any](b *testing.B, c agentcache.Codec, v T) {
	b.ReportAllocs()
	var size int
	for b.Loop() {
		data, err := c.Marshal(v)
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
		var out T
		if err := c.Unmarshal(data, &out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size), "bytes")
}

func BenchmarkProduct(b *testing.B) {
	p := *newProduct(42)
	for _, bc := range benchCodecs {
		b.Run(bc.name, func(b *testing.B) { benchRoundTrip(b, bc.codec, p) })
	}
}

func BenchmarkBatch100(b *testing.B) {
	batch := batchOf(100)
	for _, bc := range benchCodecs {
		b.Run(bc.name, func(b *testing.B) { benchRoundTrip(b, bc.codec, batch) })
	}
}
