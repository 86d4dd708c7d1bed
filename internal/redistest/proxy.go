package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy on a loopback port that forwards every connection to
// a target address and injects faults: latency, a blackhole, dropped
// connections. Point a client at [Proxy.Addr] instead of the server's
// address. Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // ends on Close; cancels dials to the target
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the proxy started

	latency atomic.Int64 // time.Duration added to every forwarded chunk

	mu     sync.Mutex // guards open, conns and closed
	open   chan struct{}
	conns  map[*proxyConn]struct{}
	closed bool
}

// StartProxy is NewProxy for a test: it fails tb if the proxy cannot start
// and closes it when tb ends.
func StartProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	p, err := NewProxy(target)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	return p
}

// NewProxy starts a proxy to target (host:port) on a free loopback port. It
// does not check that target answers: connections are dialed as clients
// arrive, and a client whose target dial fails is disconnected.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("redistest: proxy listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target: target,
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		open:   make(chan struct{}),
		conns:  make(map[*proxyConn]struct{}),
	}
	close(p.open)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the address clients connect to, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetLatency delays every chunk of data forwarded, in each direction, by d,
// so a request-reply round trip takes at least 2×d longer. It applies to
// chunks read from now on, on current and new connections. Zero removes the
// latency.
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// Blackhole switches the blackhole on or off. While it is on, the proxy
// forwards nothing: new connections are accepted but not connected to the
// target, and data on every connection is held, so clients see timeouts, not
// errors, as behind a network partition. Switching it off delivers the held
// data and connects the held connections, as when a partition heals and TCP
// retransmits.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
		if on {
			p.open = make(chan struct{})
		}
	default:
		if !on {
			close(p.open)
		}
	}
}

// DropAll closes every current connection on both sides, as a server restart
// or a middlebox reset would. New connections are proxied as usual.
func (p *Proxy) DropAll() {
	p.mu.Lock()
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// Close stops the proxy: it stops listening, closes every connection and
// returns once every goroutine it started has ended. Later calls return nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	p.DropAll()
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("redistest: proxy close: %w", err)
	}
	return nil
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A temporary failure (out of descriptors, say): back off, and
			// stop if Close happens meanwhile.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		c := &proxyConn{client: client, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			client.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c)
	}
}

// serve connects c to the target, once the blackhole (if any) lifts, and
// forwards both ways until either side closes.
func (p *Proxy) serve(c *proxyConn) {
	defer p.wg.Done()
	defer func() {
		c.close()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	if !p.waitOpen(c) {
		return
	}
	var d net.Dialer
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		return
	}
	if !c.setServer(server) {
		return
	}
	var pumps sync.WaitGroup
	pumps.Go(func() { p.pump(c, c.client, server) })
	pumps.Go(func() { p.pump(c, server, c.client) })
	pumps.Wait()
}

// pump copies src to dst, chunk by chunk, applying the latency and the
// blackhole. Any error or EOF closes the whole connection.
func (p *Proxy) pump(c *proxyConn, src, dst net.Conn) {
	defer c.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := time.Duration(p.latency.Load()); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-c.done:
					t.Stop()
					return
				}
			}
			if !p.waitOpen(c) {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitOpen blocks while the proxy is blackholed. It reports false if c was
// closed meanwhile.
func (p *Proxy) waitOpen(c *proxyConn) bool {
	for {
		p.mu.Lock()
		open := p.open
		p.mu.Unlock()
		select {
		case <-c.done:
			return false
		case <-open:
			// Blackhole may have been switched on again since we read the
			// channel; a still-closed channel means it was not.
			p.mu.Lock()
			same := p.open == open
			p.mu.Unlock()
			if same {
				return true
			}
		}
	}
}

// proxyConn is one client connection and, once dialed, its connection to
// the target.
type proxyConn struct {
	client net.Conn
	done   chan struct{} // closed by close

	mu     sync.Mutex // guards server and closed
	server net.Conn
	closed bool
}

// setServer records the target connection; it reports false, and closes
// server, if c was closed during the dial.
func (c *proxyConn) setServer(server net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		server.Close()
		return false
	}
	c.server = server
	return true
}

func (c *proxyConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	close(c.done)
	c.client.Close()
	if c.server != nil {
		c.server.Close()
	}
}
