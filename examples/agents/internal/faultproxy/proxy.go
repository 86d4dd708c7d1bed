// Package faultproxy forwards TCP connections to a server and can cut the
// link on demand, so the agent demo can take its Redis away mid-run without
// touching the server itself (which may be someone else's, set by
// REDIS_URL).
package faultproxy

import (
	"fmt"
	"io"
	"net"
	"sync"
)

// Proxy listens on a loopback port and copies bytes both ways between each
// client connection and a new connection to the target.
type Proxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex // guards conns and cut
	conns map[net.Conn]struct{}
	cut   bool

	wg sync.WaitGroup // the accept loop and the copiers
}

// Start listens on 127.0.0.1 on a free port and forwards to target
// ("host:port").
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients should dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut makes the target unreachable, as a crashed server or a lost network
// would: every open connection is closed (clients see a reset or EOF) and
// the listener goes away, so new dials are refused. It cannot be undone.
func (p *Proxy) Cut() {
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		return
	}
	p.cut = true
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	_ = p.ln.Close()
	for c := range conns {
		_ = c.Close()
	}
}

// Close cuts the link and waits for the proxy's goroutines to stop.
func (p *Proxy) Close() error {
	p.Cut()
	p.wg.Wait()
	return nil
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed by Cut
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		if !p.track(client, server) {
			return
		}
		p.wg.Add(2)
		go p.pipe(server, client)
		go p.pipe(client, server)
	}
}

// track registers a connection pair, or closes it if the link was cut
// meanwhile.
func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies src to dst until either side fails, then closes both, so the
// other direction's copier stops too.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src) // ends with EOF or a closed connection: the pair is done either way
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}
