package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const clusterSlots = 16384

// Role is the role of a cluster node.
type Role string

// The roles a [Node] reports.
const (
	RoleMaster  Role = "master"
	RoleReplica Role = "replica"
	RoleUnknown Role = "unknown" // the node did not answer
)

// Node is one node of a [Cluster], with the role it reports for itself.
type Node struct {
	// Server is the node's process: Kill, Pause or Restart it to inject
	// faults. A restarted node keeps its ID and rejoins the cluster.
	Server *Server
	// ID is the node's cluster ID.
	ID string
	// Role is the node's current role, or RoleUnknown if it did not answer
	// (killed or paused).
	Role Role
	// MasterID is the ID of a replica's master; "" for a master.
	MasterID string
}

// Cluster is a Redis Cluster of redis-server processes on loopback. Its
// methods are safe for concurrent use.
type Cluster struct {
	masters, replicas int
	servers           []*Server // masters first, then the replicas of master 0, of master 1, ...
	ids               []string  // cluster node IDs, parallel to servers
	cfg               Config
	dir               string    // holds the shared TLS files; "" without TLS
	tls               *tlsFiles // shared by every node; nil without TLS

	mu     sync.Mutex // guards closed
	closed bool
}

// LaunchCluster starts masters×(1+replicasPerMaster) redis-server processes,
// assigns the 16384 slots evenly to the masters in order (master i serves
// the i-th range), attaches replicasPerMaster replicas to each master, and
// waits until every node reports cluster_state:ok, every slot is covered and
// every replica is in sync. The caller must call [Cluster.Close]. In tests,
// use [StartCluster].
//
// cfg is optional (at most one) and applies to every node; with Password,
// replicas authenticate to their masters with it. The nodes run with
// cluster-node-timeout 1000 (1s), so a killed master is replaced within a few
// seconds; override it with Args. Forming the cluster may take up to three
// times [Config.StartTimeout].
func LaunchCluster(masters, replicasPerMaster int, cfg ...Config) (*Cluster, error) {
	if masters < 1 || replicasPerMaster < 0 {
		return nil, fmt.Errorf("redistest: a cluster needs at least 1 master and no negative replica count, got %d masters and %d replicas per master", masters, replicasPerMaster)
	}
	conf, err := oneConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := conf.validate(); err != nil {
		return nil, err
	}
	if _, err := findBinary(conf.Binary); err != nil {
		return nil, err
	}
	c := &Cluster{masters: masters, replicas: replicasPerMaster, cfg: conf}
	if conf.TLS {
		if c.dir, err = os.MkdirTemp("", "redistest-cluster-"); err != nil {
			return nil, fmt.Errorf("redistest: %w", err)
		}
		if c.tls, err = newTLSFiles(c.dir); err != nil {
			c.Close()
			return nil, err
		}
	}

	n := masters * (1 + replicasPerMaster)
	c.servers = make([]*Server, n)
	c.ids = make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { c.servers[i], errs[i] = launch(conf, c.tls, true) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*conf.startTimeout())
	defer cancel()
	if err := c.form(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// StartCluster launches a cluster for the duration of a test, like
// [LaunchCluster]: it calls tb.Fatal if the cluster cannot start and closes it
// when the test ends. If the test failed, the end of every node's log is
// logged.
func StartCluster(tb testing.TB, masters, replicasPerMaster int, cfg ...Config) *Cluster {
	tb.Helper()
	c, err := LaunchCluster(masters, replicasPerMaster, cfg...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			for _, s := range c.servers {
				tb.Logf("redistest: end of the log of cluster node %s:\n%s", s.Addr(), s.logTail(20))
			}
		}
		if err := c.Close(); err != nil {
			tb.Error(err)
		}
	})
	return c
}

// slotRange returns the slots that master i of m serves at creation.
func slotRange(i, m int) (lo, hi int) {
	return i * clusterSlots / m, (i+1)*clusterSlots/m - 1
}

// masterOf returns the index of the master of replica server i.
func (c *Cluster) masterOf(i int) int {
	return (i - c.masters) / c.replicas
}

func nodeErr(s *Server, what string, err error) error {
	return fmt.Errorf("redistest: cluster node %s: %s: %w", s.Addr(), what, err)
}

// form turns the independent nodes into one cluster. It does what
// 'redis-cli --cluster create' does, without needing redis-cli and without
// its fixed one-second waits.
func (c *Cluster) form(ctx context.Context) error {
	conns := make([]*respConn, len(c.servers))
	defer func() {
		for _, conn := range conns {
			if conn != nil {
				conn.close()
			}
		}
	}()
	for i, s := range c.servers {
		conn, err := s.dial(5 * time.Second)
		if err != nil {
			return nodeErr(s, "connect", err)
		}
		conns[i] = conn
		if c.ids[i], err = conn.str("CLUSTER", "MYID"); err != nil {
			return nodeErr(s, "CLUSTER MYID", err)
		}
		// Distinct epochs up front spare the nodes resolving collisions.
		if _, err := conn.do("CLUSTER", "SET-CONFIG-EPOCH", i+1); err != nil {
			return nodeErr(s, "CLUSTER SET-CONFIG-EPOCH", err)
		}
	}
	for i := range c.masters {
		lo, hi := slotRange(i, c.masters)
		if _, err := conns[i].do("CLUSTER", "ADDSLOTSRANGE", lo, hi); err != nil {
			return nodeErr(c.servers[i], "CLUSTER ADDSLOTSRANGE", err)
		}
	}
	for _, s := range c.servers[1:] {
		if _, err := conns[0].do("CLUSTER", "MEET", "127.0.0.1", s.port, s.busPort); err != nil {
			return nodeErr(c.servers[0], "CLUSTER MEET", err)
		}
	}
	err := poll(ctx, "cluster nodes to meet", func() string {
		for i, conn := range conns {
			entries, err := clusterNodes(conn)
			if err != nil {
				return err.Error()
			}
			if len(entries) != len(c.servers) {
				return fmt.Sprintf("node %s knows %d of %d nodes", c.servers[i].Addr(), len(entries), len(c.servers))
			}
			for _, e := range entries {
				if e.flags["handshake"] || e.flags["noaddr"] {
					return fmt.Sprintf("node %s: %s is still in handshake", c.servers[i].Addr(), e.addr)
				}
			}
		}
		return ""
	})
	if err != nil {
		return err
	}
	for i := c.masters; i < len(c.servers); i++ {
		if _, err := conns[i].do("CLUSTER", "REPLICATE", c.ids[c.masterOf(i)]); err != nil {
			return nodeErr(c.servers[i], "CLUSTER REPLICATE", err)
		}
	}
	return poll(ctx, "the cluster to be ready", func() string { return c.checkFormed(conns) })
}

// checkFormed returns "" once every node agrees on the layout form built
// and every replica is in sync, or else what is still missing.
func (c *Cluster) checkFormed(conns []*respConn) string {
	for i, conn := range conns {
		addr := c.servers[i].Addr()
		if why := checkClusterInfo(addr, conn); why != "" {
			return why
		}
		entries, err := clusterNodes(conn)
		if err != nil {
			return fmt.Sprintf("node %s: %v", addr, err)
		}
		byID := make(map[string]nodeEntry, len(entries))
		for _, e := range entries {
			byID[e.id] = e
		}
		for j, id := range c.ids {
			e := byID[id]
			switch {
			case j < c.masters && !e.flags["master"]:
				return fmt.Sprintf("node %s does not see %s as a master yet", addr, c.servers[j].Addr())
			case j >= c.masters && (!e.flags["slave"] || e.master != c.ids[c.masterOf(j)]):
				return fmt.Sprintf("node %s does not see %s as a replica of %s yet", addr, c.servers[j].Addr(), c.servers[c.masterOf(j)].Addr())
			}
		}
		if i >= c.masters {
			info, err := conn.str("INFO", "replication")
			if err != nil {
				return fmt.Sprintf("node %s: %v", addr, err)
			}
			if st := infoFields(info)["master_link_status"]; st != "up" {
				return fmt.Sprintf("replica %s: master_link_status:%s", addr, st)
			}
		}
	}
	return ""
}

func checkClusterInfo(addr string, conn *respConn) string {
	text, err := conn.str("CLUSTER", "INFO")
	if err != nil {
		return fmt.Sprintf("node %s: %v", addr, err)
	}
	info := infoFields(text)
	if st := info["cluster_state"]; st != "ok" {
		return fmt.Sprintf("node %s: cluster_state:%s", addr, st)
	}
	if ok := info["cluster_slots_ok"]; ok != strconv.Itoa(clusterSlots) {
		return fmt.Sprintf("node %s: cluster_slots_ok:%s", addr, ok)
	}
	return ""
}

// poll calls check until it returns "" or ctx ends; check says what it is
// still waiting for, which the timeout error repeats.
func poll(ctx context.Context, what string, check func() string) error {
	for {
		why := check()
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redistest: waiting for %s: %w (last: %s)", what, ctx.Err(), why)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Addrs returns the address of every node: the masters in slot order, then
// the replicas of master 0, of master 1, and so on. After a failover the
// roles differ from this order; see [Cluster.Nodes].
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.servers))
	for i, s := range c.servers {
		addrs[i] = s.Addr()
	}
	return addrs
}

// ClusterOptions returns a fresh go-redis cluster configuration with every
// node as a seed, the credentials [Server.Options] would use, and the TLS
// configuration with TLS. Other fields keep go-redis's defaults.
func (c *Cluster) ClusterOptions() *redis.ClusterOptions {
	user, pass := c.cfg.clientCredentials()
	opt := &redis.ClusterOptions{
		Addrs:    c.Addrs(),
		Username: user,
		Password: pass,
	}
	if c.tls != nil {
		opt.TLSConfig = c.tls.clientConfig()
	}
	return opt
}

// Client returns a go-redis cluster client built from
// [Cluster.ClusterOptions]. It is closed when the test ends, before the
// cluster is.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	cc := redis.NewClusterClient(c.ClusterOptions())
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

// Nodes returns every node, in the order of [Cluster.Addrs], with the role
// each reports for itself now. A node that does not answer within half a
// second has RoleUnknown.
func (c *Cluster) Nodes() []Node {
	nodes := make([]Node, len(c.servers))
	for i, s := range c.servers {
		nodes[i] = Node{Server: s, ID: c.ids[i], Role: RoleUnknown}
		conn, err := s.dial(500 * time.Millisecond)
		if err != nil {
			continue
		}
		entries, err := clusterNodes(conn)
		conn.close()
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.flags["myself"] {
				continue
			}
			switch {
			case e.flags["master"]:
				nodes[i].Role = RoleMaster
			case e.flags["slave"]:
				nodes[i].Role = RoleReplica
				nodes[i].MasterID = e.master
			}
		}
	}
	return nodes
}

// KillMaster SIGKILLs the master that currently serves the i-th slot range
// (0 ≤ i < masters; master i at creation, or the replica that replaced it)
// and returns its server, which can be restarted; it rejoins as a replica
// once a failover has happened. Call [Cluster.WaitForFailover] before killing
// another master: until then, the nodes may still name the dead one.
func (c *Cluster) KillMaster(i int) (*Server, error) {
	if i < 0 || i >= c.masters {
		return nil, fmt.Errorf("redistest: KillMaster(%d): the cluster has %d masters", i, c.masters)
	}
	slot, _ := slotRange(i, c.masters)
	for _, s := range c.servers {
		conn, err := s.dial(500 * time.Millisecond)
		if err != nil {
			continue
		}
		entries, err := clusterNodes(conn)
		conn.close()
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.flags["master"] || e.failing() || !e.serves(slot) {
				continue
			}
			for _, victim := range c.servers {
				if victim.Addr() == e.addr {
					victim.Kill()
					return victim, nil
				}
			}
			return nil, fmt.Errorf("redistest: KillMaster(%d): slot %d is served by %s, which is not a node of this cluster", i, slot, e.addr)
		}
	}
	return nil, fmt.Errorf("redistest: KillMaster(%d): no node answered with a master for slot %d", i, slot)
}

// WaitForFailover waits until the cluster serves every slot again: every
// node that answers reports cluster_state:ok with all 16384 slots, and names
// as the owner of every slot a master that answers. After [Cluster.KillMaster]
// this means one of the dead master's replicas has been promoted (with no
// replica left it never happens; bound ctx). It returns ctx's error, with
// what it was still waiting for, if ctx ends first.
func (c *Cluster) WaitForFailover(ctx context.Context) error {
	return poll(ctx, "the cluster to recover", c.checkServing)
}

func (c *Cluster) checkServing() string {
	alive := make(map[string]*respConn)
	defer func() {
		for _, conn := range alive {
			conn.close()
		}
	}()
	for _, s := range c.servers {
		conn, err := s.dial(300 * time.Millisecond)
		if err != nil {
			continue
		}
		if _, err := conn.do("PING"); err != nil { // a paused node accepts but never answers
			conn.close()
			continue
		}
		alive[s.Addr()] = conn
	}
	if len(alive) == 0 {
		return "no node answers"
	}
	for addr, conn := range alive {
		if why := checkClusterInfo(addr, conn); why != "" {
			return why
		}
		entries, err := clusterNodes(conn)
		if err != nil {
			return fmt.Sprintf("node %s: %v", addr, err)
		}
		served := 0
		for _, e := range entries {
			if len(e.slots) == 0 {
				continue
			}
			if alive[e.addr] == nil || e.failing() {
				return fmt.Sprintf("node %s: slots %v are served by %s, which does not answer", addr, e.slots[0], e.addr)
			}
			for _, r := range e.slots {
				served += r[1] - r[0] + 1
			}
		}
		if served != clusterSlots {
			return fmt.Sprintf("node %s: %d of %d slots have a master", addr, served, clusterSlots)
		}
	}
	return ""
}

// Close kills every node and removes their files. Later calls return nil.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	for _, s := range c.servers {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	if c.dir != "" {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, fmt.Errorf("redistest: %w", err))
		}
	}
	return errors.Join(errs...)
}

// nodeEntry is one line of CLUSTER NODES.
type nodeEntry struct {
	id     string
	addr   string // host:port, without the bus port
	flags  map[string]bool
	master string // "" for a master
	slots  [][2]int
}

func (e nodeEntry) failing() bool { return e.flags["fail"] || e.flags["fail?"] }

func (e nodeEntry) serves(slot int) bool {
	for _, r := range e.slots {
		if r[0] <= slot && slot <= r[1] {
			return true
		}
	}
	return false
}

func clusterNodes(conn *respConn) ([]nodeEntry, error) {
	text, err := conn.str("CLUSTER", "NODES")
	if err != nil {
		return nil, err
	}
	return parseClusterNodes(text), nil
}

// parseClusterNodes reads lines of the form
//
//	<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot>...
func parseClusterNodes(text string) []nodeEntry {
	var entries []nodeEntry
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		addr, _, _ = strings.Cut(addr, ",")
		e := nodeEntry{id: f[0], addr: addr, flags: make(map[string]bool)}
		for _, fl := range strings.Split(f[2], ",") {
			e.flags[fl] = true
		}
		if f[3] != "-" {
			e.master = f[3]
		}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") { // a slot being migrated or imported
				continue
			}
			loS, hiS, isRange := strings.Cut(s, "-")
			lo, err1 := strconv.Atoi(loS)
			hi, err2 := lo, error(nil)
			if isRange {
				hi, err2 = strconv.Atoi(hiS)
			}
			if err1 == nil && err2 == nil {
				e.slots = append(e.slots, [2]int{lo, hi})
			}
		}
		entries = append(entries, e)
	}
	return entries
}
