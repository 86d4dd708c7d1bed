package redis

import goredis "github.com/redis/go-redis/v9"

// OptionsFromURL exposes optionsFromURL to the external tests: it parses a
// URL as NewFromURL does, without connecting.
var OptionsFromURL = optionsFromURL

// ShownAddr is how NewFromURL's errors name the server of options o.
func ShownAddr(o *goredis.Options) string { return shownAddr(o) }
