// Package redistest starts real redis-server processes on loopback for tests,
// benchmarks and soak runs, and injects network faults between a client and
// a server.
//
// # Servers
//
// [Start] launches a server for one test and stops it when the test ends,
// whether the test passes, fails or calls t.FailNow midway:
//
//	srv := redistest.Start(t)
//	rdb := srv.Client(t) // a *redis.Client, closed when the test ends
//
// [Launch] does the same without a testing.TB, for commands such as a soak
// run; the caller must Close the [Server]. A [Config] adds redis.conf
// directives, a password, an extra ACL user or TLS. Every server gets a free
// loopback port, a temporary directory for its files (removed on Close),
// no persistence (save "", appendonly no), and is ready to answer when Launch
// returns. The harness checks that the process answering on the port is the
// one it started, so parallel tests and parallel test binaries never share a
// server by accident.
//
// A server can be made to fail: [Server.Kill] (SIGKILL), [Server.Stop]
// (SIGTERM), [Server.Pause] and [Server.Resume] (SIGSTOP and SIGCONT), and
// [Server.Restart] brings it back on the same address. Every method is safe
// to call twice and after Close.
//
// # Clusters
//
// [StartCluster] and [LaunchCluster] start a real Redis Cluster with a short
// cluster-node-timeout (1s), so failover tests run in seconds:
//
//	c := redistest.StartCluster(t, 3, 1) // 3 masters, 1 replica each
//	c.KillMaster(0)
//	err := c.WaitForFailover(ctx)
//
// # Faults between client and server
//
// A [Proxy] forwards TCP connections to a server and can add latency,
// blackhole traffic or drop every connection.
//
// # Installing redis-server
//
// The harness needs the redis-server binary (Redis 7 or later). When it is
// missing, Launch returns [ErrNotInstalled], whose message says how to install
// it, and Start fails the test with that message: tests never skip silently
// because Redis is absent. On Debian or Ubuntu:
//
//	apt-get install -y redis-server
//
// or run 'bash .ci/run', which installs it.
//
// Processes are started with a parent-death signal on Linux, so a test binary
// that is killed (for example by a -timeout panic) takes its servers with it.
package redistest
