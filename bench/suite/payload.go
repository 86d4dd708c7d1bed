package suite

import (
	"math/rand"
	"strconv"
	"sync/atomic"
)

// Product is the value every system caches: a small tool result, about 150
// bytes as JSON.
type Product struct {
	ID    int      `json:"id" msgpack:"id"`
	SKU   string   `json:"sku" msgpack:"sku"`
	Name  string   `json:"name" msgpack:"name"`
	Price float64  `json:"price" msgpack:"price"`
	Stock int      `json:"stock" msgpack:"stock"`
	Tags  []string `json:"tags" msgpack:"tags"`
}

// newProduct returns the product with id.
func newProduct(id int) *Product {
	return &Product{
		ID:    id,
		SKU:   "SKU-" + strconv.Itoa(100000+id),
		Name:  "Ergonomic widget, model " + strconv.Itoa(id),
		Price: 19.99 + float64(id%100),
		Stock: id % 37,
		Tags:  []string{"widgets", "office", "blue"},
	}
}

// ProductArgs is the small struct argument of the typed tool.
type ProductArgs struct {
	ID     int    `json:"id"`
	Locale string `json:"locale"`
}

// productJSONArgs returns the JSON arguments of the JSON tool for id, in
// the shape a model sends them.
func productJSONArgs(id int) []byte {
	return []byte(`{"id": ` + strconv.Itoa(id) + `, "locale": "en-US"}`)
}

// keyName returns the key-value key of id.
func keyName(id int) string { return "product:" + strconv.Itoa(id) }

// zipfSeq returns n key indexes in [0, keys) drawn from Zipf(s=1.1): a few
// hot keys and a long tail, like the tools an agent fleet calls. Every
// system of a workload walks the same sequence.
func zipfSeq(n, keys int, seed int64) []int32 {
	r := rand.New(rand.NewSource(seed))
	z := rand.NewZipf(r, 1.1, 1, uint64(keys-1))
	// Shuffle which keys are hot, so hot keys are not also the first ones
	// written.
	perm := r.Perm(keys)
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(perm[z.Uint64()])
	}
	return out
}

// cursor hands each parallel benchmark goroutine its own starting point in
// a shared sequence.
type cursor struct{ next atomic.Uint64 }

// start returns a starting index for a new goroutine.
func (c *cursor) start(n int) int {
	return int((c.next.Add(1) * 7919) % uint64(n))
}
