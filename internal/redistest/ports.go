package redistest

import (
	"fmt"
	"net"
	"sync"
)

// reserved holds the ports this process has handed to servers that are still
// open. The kernel may give a just-closed port to the next listener; the set
// keeps two servers of the same test binary from ever being offered the same
// port. Servers in other processes are told apart by their pid (see
// Server.waitReady).
var reserved = struct {
	mu    sync.Mutex
	ports map[int]bool
}{ports: make(map[int]bool)}

// reservePorts returns n distinct free loopback ports. They are free when
// the call returns; redis-server may still lose a race for them, which
// Launch detects and retries.
func reservePorts(n int) ([]int, error) {
	reserved.mu.Lock()
	defer reserved.mu.Unlock()
	var (
		ports []int
		held  []net.Listener
	)
	// Listeners stay open until the end so the kernel cannot hand out the
	// same port twice in this loop.
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries == 100 {
			return nil, fmt.Errorf("redistest: no free loopback port after %d tries", tries)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("redistest: find a free port: %w", err)
		}
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		if !reserved.ports[port] {
			ports = append(ports, port)
		}
	}
	for _, p := range ports {
		reserved.ports[p] = true
	}
	return ports, nil
}

func releasePorts(ports ...int) {
	reserved.mu.Lock()
	defer reserved.mu.Unlock()
	for _, p := range ports {
		delete(reserved.ports, p)
	}
}
