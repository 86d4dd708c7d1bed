package redistest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// respConn is the small RESP2 client the harness uses for its own probes and
// cluster set-up. It does not use go-redis on purpose: a go-redis pool that
// fails to dial retries in the background and logs, which is noise while the
// harness polls a server that is starting or has been killed.
type respConn struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

// respError is an error reply from the server.
type respError string

func (e respError) Error() string { return string(e) }

// dialRESP connects to addr and, when password is set, logs in as the
// default user. timeout bounds the dial and every later command.
func dialRESP(addr string, tlsConf *tls.Config, password string, timeout time.Duration) (*respConn, error) {
	d := &net.Dialer{Timeout: timeout}
	var (
		conn net.Conn
		err  error
	)
	if tlsConf != nil {
		conn, err = tls.DialWithDialer(d, "tcp", addr, tlsConf)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	c := &respConn{conn: conn, r: bufio.NewReader(conn), timeout: timeout}
	if password != "" {
		if _, err := c.do("AUTH", password); err != nil {
			c.close()
			return nil, fmt.Errorf("AUTH: %w", err)
		}
	}
	return c, nil
}

func (c *respConn) close() { c.conn.Close() }

// do sends one command and returns its reply: a string, an int64, nil or a
// []any of those. An error reply is returned as a respError.
func (c *respConn) do(args ...any) (any, error) {
	if err := c.conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		s := fmt.Sprint(a)
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(s), s)
	}
	if _, err := io.WriteString(c.conn, b.String()); err != nil {
		return nil, err
	}
	v, err := c.read()
	if err != nil {
		return nil, err
	}
	if e, ok := v.(respError); ok {
		return nil, e
	}
	return v, nil
}

// str runs a command whose reply is a status or a bulk string.
func (c *respConn) str(args ...any) (string, error) {
	v, err := c.do(args...)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%v: unexpected reply %T", args[0], v)
	}
	return s, nil
}

func (c *respConn) read() (any, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty RESP line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return respError(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		arr := make([]any, n)
		for i := range arr {
			if arr[i], err = c.read(); err != nil {
				return nil, err
			}
		}
		return arr, nil
	default:
		return nil, fmt.Errorf("unexpected RESP line %q", line)
	}
}

// infoFields parses the "name:value" lines of INFO and CLUSTER INFO.
func infoFields(s string) map[string]string {
	m := make(map[string]string)
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}
