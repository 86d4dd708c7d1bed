package cbor_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/codec/cbor"
	"github.com/agentcache/agentcache-go/resource"
	"github.com/agentcache/agentcache-go/scope"
)

type hidden struct {
	Name  string
	notes string
}

type skippedCBOR struct {
	Secret string `cbor:"-"`
}

type skippedJSON struct {
	Secret string `json:"-"`
}

type withErr struct{ Err error }

type withFunc struct{ F func() }

type A struct{ ID string }
type B struct{ ID string }

type collide struct {
	A
	B
}

type sameName struct {
	X int `cbor:"x"`
	Y int `json:"x"`
}

type anyKeyed struct{ M map[any]int }

type structKeyed struct{ M map[A]int }

type ptrPtr struct{ P **int }

type ptrSlice struct{ P *[]int }

type badKey struct {
	N int `cbor:"one,keyasint"`
}

type innerUnexported struct{ N int }

type embedsUnexportedPtr struct {
	*innerUnexported
}

// onlyMarshalCBOR writes itself but cannot read itself back.
type onlyMarshalCBOR struct{ V int }

func (onlyMarshalCBOR) MarshalCBOR() ([]byte, error) { return []byte{0x01}, nil }

// onlyUnmarshalBinary reads bytes it never writes.
type onlyUnmarshalBinary struct{ V int }

func (*onlyUnmarshalBinary) UnmarshalBinary([]byte) error { return nil }

// redactedJSON is written field by field: MarshalJSON is not used.
type redactedJSON struct{ Token string }

func (redactedJSON) MarshalJSON() ([]byte, error) { return []byte(`"***"`), nil }

type nested struct {
	Items []struct {
		Meta map[string]*hidden
	}
}

// CheckType refuses each type whose values would not come back, naming the
// part, with an error that starts with the package name.
func TestCheckTypeRefusesWhatDoesNotComeBack(t *testing.T) {
	for _, tc := range []struct {
		t    reflect.Type
		part string
	}{
		{reflect.TypeFor[hidden](), "hidden.notes"},
		{reflect.TypeFor[skippedCBOR](), "skippedCBOR.Secret"},
		{reflect.TypeFor[skippedJSON](), "skippedJSON.Secret"},
		{reflect.TypeFor[withErr](), "withErr.Err"},
		{reflect.TypeFor[error](), "error"},
		{reflect.TypeFor[withFunc](), "withFunc.F"},
		{reflect.TypeFor[chan int](), "chan int"},
		{reflect.TypeFor[complex128](), "complex128"},
		{reflect.TypeFor[uintptr](), "uintptr"},
		{reflect.TypeFor[unsafe.Pointer](), "unsafe.Pointer"},
		{reflect.TypeFor[collide](), "collide.A.ID"},
		{reflect.TypeFor[sameName](), "sameName.X"},
		{reflect.TypeFor[anyKeyed](), "anyKeyed.M"},
		{reflect.TypeFor[structKeyed](), "structKeyed.M"},
		{reflect.TypeFor[ptrPtr](), "ptrPtr.P"},
		{reflect.TypeFor[ptrSlice](), "ptrSlice.P"},
		{reflect.TypeFor[*any](), "*interface {}"},
		{reflect.TypeFor[badKey](), "badKey.N"},
		{reflect.TypeFor[embedsUnexportedPtr](), "embedsUnexportedPtr.innerUnexported"},
		{reflect.TypeFor[onlyMarshalCBOR](), "MarshalCBOR"},
		{reflect.TypeFor[onlyUnmarshalBinary](), "UnmarshalBinary"},
		{reflect.TypeFor[nested](), "nested.Items.Meta.notes"},
	} {
		err := cbor.Codec{}.CheckType(tc.t)
		var te *cbor.TypeError
		if !errors.As(err, &te) || !strings.HasPrefix(err.Error(), "cbor: ") || !strings.Contains(err.Error(), tc.part) {
			t.Errorf("%v: %v; want a *cbor.TypeError starting with \"cbor: \" naming %s", tc.t, err, tc.part)
		}
	}
}

type fine struct {
	A
	_       struct{} `cbor:",omitempty"`
	Name    string   `json:"name"`
	Alias   string   `cbor:"alias"`
	When    time.Time
	Until   *time.Time
	Any     any
	Raw     json.RawMessage
	Bytes   []byte
	Items   map[int][]*Owner
	ByFlag  map[bool]string
	ByFloat map[float64]string
	ByHash  map[[4]byte]string
	Addr    netip.Addr
	N       *big.Int
	D       time.Duration
	R       redactedJSON
	Self    *fine
	Keyed   keyed
	Arr     toArray
}

// product has the shape of a typical tool result (the bench suite's
// payload).
type product struct {
	ID    int      `json:"id"`
	SKU   string   `json:"sku"`
	Name  string   `json:"name"`
	Price float64  `json:"price"`
	Stock int      `json:"stock"`
	Tags  []string `json:"tags"`
}

// What the codec carries is accepted, interface{} and recursive types
// included, and Wrap accepts it.
func TestCheckTypeAcceptsWhatComesBack(t *testing.T) {
	for _, typ := range []reflect.Type{
		reflect.TypeFor[fine](), reflect.TypeFor[*fine](), reflect.TypeFor[[]fine](), reflect.TypeFor[map[string]any](),
		reflect.TypeFor[time.Time](), reflect.TypeFor[string](), reflect.TypeFor[struct{}](), reflect.TypeFor[product](),
	} {
		if err := (cbor.Codec{}).CheckType(typ); err != nil {
			t.Errorf("%v: %v", typ, err)
		}
	}
	same(t, "a redacting MarshalJSON is not used", redactedJSON{Token: "t"})
}

// Wrap refuses a result type CheckType refuses, with an error wrapping
// agentcache.ErrResultType that names the part.
func TestWrapRefusesTypesTheCodecCannotCarry(t *testing.T) {
	c, err := agentcache.New(agentcache.Options{Codec: cbor.Codec{}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	res := resource.Resource{Name: "refused", Scope: scope.Global, TTL: time.Hour}
	_, err = agentcache.Wrap(c, res, func(context.Context, string) (hidden, error) { return hidden{}, nil })
	if !errors.Is(err, agentcache.ErrResultType) || !strings.Contains(err.Error(), "notes") {
		t.Errorf("Wrap of a refused type: %v; want an error wrapping ErrResultType naming notes", err)
	}
	var te *cbor.TypeError
	if !errors.As(err, &te) || te.Path != "cbor_test.hidden.notes" {
		t.Errorf("Wrap's error does not wrap the *cbor.TypeError: %v", err)
	}
	_, err = agentcache.Wrap(c, resource.Resource{Name: "fine", Scope: scope.Global, TTL: time.Hour},
		func(context.Context, string) (fine, error) { return fine{}, nil })
	if err != nil {
		t.Errorf("Wrap of a type the codec carries: %v", err)
	}
}
