package redistest

import (
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ErrNotInstalled is returned (possibly wrapped) by [Launch] and
// [LaunchCluster] when the redis-server binary cannot be found.
var ErrNotInstalled = errors.New("redistest: redis-server not found in PATH: install it with 'apt-get install -y redis-server' (Debian/Ubuntu) or 'bash .ci/run', which installs it")

const defaultStartTimeout = 10 * time.Second

// Config configures a server. The zero value starts a plain server with no
// password on a free loopback port.
type Config struct {
	// Args are extra redis.conf directives, one per element, written as in
	// redis.conf: "maxmemory 2mb", "maxmemory-policy allkeys-lru". They are
	// written after the harness's own directives, so they override them
	// (but do not move the port or the directory: the harness relies on
	// both). Default: none.
	Args []string

	// Password is the requirepass of the default user. Default: no password.
	Password string

	// ACLUser, when set, creates an extra ACL user with full access
	// ("on >ACLPassword ~* &* +@all", or "nopass" if ACLPassword is empty).
	// [Server.Options], [Server.URL] and [Server.Client] then log in as this
	// user; the harness itself logs in as the default user. Default: none.
	ACLUser string

	// ACLPassword is the password of ACLUser. It requires ACLUser.
	ACLPassword string

	// TLS makes the server accept TLS connections only, with a throwaway CA
	// and server certificate generated for 127.0.0.1. Clients need
	// [Server.TLSConfig] (or [Server.CAFile]); client certificates are not
	// required. Default: plain TCP.
	TLS bool

	// Binary is the redis-server executable. Default: "redis-server" looked
	// up in PATH.
	Binary string

	// StartTimeout bounds how long Launch and Restart wait for the server to
	// answer. Default: 10s.
	StartTimeout time.Duration
}

func (c Config) validate() error {
	for _, a := range c.Args {
		if strings.TrimSpace(a) == "" {
			return errors.New("redistest: Config.Args has an empty directive")
		}
		if strings.ContainsAny(a, "\r\n") {
			return fmt.Errorf("redistest: Config.Args directive %q contains a line break", a)
		}
	}
	if c.ACLPassword != "" && c.ACLUser == "" {
		return errors.New("redistest: Config.ACLPassword is set without Config.ACLUser")
	}
	if c.StartTimeout < 0 {
		return fmt.Errorf("redistest: Config.StartTimeout is negative (%v)", c.StartTimeout)
	}
	return nil
}

func (c Config) startTimeout() time.Duration {
	if c.StartTimeout == 0 {
		return defaultStartTimeout
	}
	return c.StartTimeout
}

// clientCredentials are the credentials users' clients log in with.
func (c Config) clientCredentials() (user, password string) {
	if c.ACLUser != "" {
		return c.ACLUser, c.ACLPassword
	}
	return "", c.Password
}

func oneConfig(cfg []Config) (Config, error) {
	switch len(cfg) {
	case 0:
		return Config{}, nil
	case 1:
		c := cfg[0]
		c.Args = append([]string(nil), c.Args...)
		return c, nil
	default:
		return Config{}, fmt.Errorf("redistest: at most one Config, got %d", len(cfg))
	}
}

func findBinary(name string) (string, error) {
	if name == "" {
		path, err := exec.LookPath("redis-server")
		if err != nil {
			return "", ErrNotInstalled
		}
		return path, nil
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w (Config.Binary %q: %v)", ErrNotInstalled, name, err)
	}
	return path, nil
}

// confWriter renders redis.conf lines, quoting every value so that spaces,
// quotes and control characters in passwords and paths survive.
type confWriter struct{ b strings.Builder }

func (w *confWriter) line(name string, values ...string) {
	w.b.WriteString(name)
	for _, v := range values {
		w.b.WriteByte(' ')
		w.b.WriteString(quoteConf(v))
	}
	w.b.WriteByte('\n')
}

func (w *confWriter) raw(line string) {
	w.b.WriteString(line)
	w.b.WriteByte('\n')
}

// quoteConf quotes v the way redis.conf's argument splitter (sdssplitargs)
// reads it back.
func quoteConf(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(c)>>4, 16))
			b.WriteString(strconv.FormatUint(uint64(c)&0xf, 16))
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
