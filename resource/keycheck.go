package resource

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/agentcache/agentcache-go/internal/jsontype"
)

// ErrLossyArgs is wrapped by the error of [CheckArgs] for an argument type
// whose JSON encoding leaves out part of the value.
var ErrLossyArgs = errors.New("resource: arguments the key would not cover")

// CheckArgs reports whether every part of a value of type t that a tool can
// see is in its JSON encoding, which is what [HashValue] keys a call on. A
// struct field that encoding/json leaves out (unexported, tagged
// `json:"-"`, or hidden by another field of the same JSON name) is not: two
// calls that differ only there would share one cached answer, though the
// tool gets different input. Nor are functions and channels, which have no
// encoding. The error names the field. A type that encodes itself
// (json.Marshaler, encoding.TextMarshaler) is trusted to encode what it
// holds only when it can also decode itself; one that only encodes (a
// MarshalJSON that redacts, say) is refused. Interface values are checked
// when they are hashed, not here.
func CheckArgs(t reflect.Type) error {
	if err := jsontype.Check(t, jsontype.Args); err != nil {
		return fmt.Errorf("%w: %w", ErrLossyArgs, err)
	}
	return nil
}
