// Package redistest starts and stops a throwaway redis-server for tests: a real server on a free
// loopback port, with no persistence, in a directory the caller owns.
//
// It owns only the server process. It holds no data, knows no key of the project, and is imported by
// _test.go files only (store/redis, dispatch/streams, and cmd/ivr's tests of several nodes). A test binary normally starts one Server in
// TestMain through [Main] and flushes it between tests; a test that stops or freezes the server starts
// its own with [Start] so it does not disturb the others.
//
// The server is the Debian package redis-server (/usr/bin/redis-server). When it is not on PATH the
// tests that need it are skipped, unless the environment variable CI is set: then [Main] fails the
// binary, so CI never passes by skipping.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Binary is the name of the server program looked up on PATH.
const Binary = "redis-server"

// readyTimeout bounds how long Start waits for the server to answer PING.
const readyTimeout = 10 * time.Second

// Server is one redis-server process. Its methods are safe for concurrent use.
type Server struct {
	bin  string
	dir  string
	port int

	// mu guards cmd and exited, which change on every (re)start.
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// Start starts redis-server on a free port of 127.0.0.1, with dir (which must exist) as its working
// directory and log directory, no RDB snapshots and no AOF, and returns once it answers PING. The
// caller stops it with Close.
func Start(dir string) (*Server, error) {
	bin, err := exec.LookPath(Binary)
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	var last error
	// A port found free may be taken before redis-server binds it; try a few.
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{bin: bin, dir: dir, port: port}
		if last = s.start(); last == nil {
			return s, nil
		}
	}
	return nil, last
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs the process on s.port and waits until it answers.
func (s *Server) start() error {
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--dir", s.dir,
		"--logfile", "redis.log",
	)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: starting %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	deadline := time.Now().Add(readyTimeout)
	for {
		if ping(s.Addr()) == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redistest: redis-server on port %d exited at start: %s", s.port, s.logTail())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("redistest: redis-server on port %d did not answer within %v", s.port, readyTimeout)
		}
	}
}

// ping sends one inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 7)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(buf[:n], []byte("+PONG")) {
		return fmt.Errorf("redistest: PING answered %q", buf[:n])
	}
	return nil
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Options returns client options for the server with short timeouts (dial, read and write 500 ms,
// one retry, one dial attempt), so a stopped or frozen server turns into errors quickly instead of hangs.
func (s *Server) Options() *goredis.Options {
	return &goredis.Options{
		Addr:         s.Addr(),
		DialTimeout:  500 * time.Millisecond,
		ReadTimeout:  500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond,
		MaxRetries:   1,
		PoolTimeout:  time.Second,
		// One dial attempt: go-redis would otherwise retry a refused dial five times.
		DialerRetries: 1,
	}
}

// Client returns a new client for the server with [Server.Options]; tb closes it at cleanup.
func (s *Server) Client(tb testing.TB) *goredis.Client {
	tb.Helper()
	c := goredis.NewClient(s.Options())
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Flush empties every database of the server (FLUSHALL), failing tb on error.
func (s *Server) Flush(tb testing.TB) {
	tb.Helper()
	c := goredis.NewClient(s.Options())
	defer c.Close()
	if err := c.FlushAll(context.Background()).Err(); err != nil {
		tb.Fatalf("redistest: FLUSHALL: %v", err)
	}
}

// Kill stops the server abruptly (SIGKILL) and waits for it to exit; its data is lost. Start it again
// with Restart. Killing a stopped server does nothing.
func (s *Server) Kill() { s.kill() }

func (s *Server) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a frozen process must run to die promptly
	_ = cmd.Process.Kill()
	<-exited
}

// Restart starts the server again on the same port after Kill, empty, and returns once it answers.
func (s *Server) Restart() error {
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	select {
	case <-exited:
	default:
		return errors.New("redistest: Restart of a running server")
	}
	return s.start()
}

// Freeze suspends the server (SIGSTOP): connections stay open and the kernel still accepts new ones,
// but nothing is answered, as with a hung server or a network partition. Thaw resumes it.
func (s *Server) Freeze() error { return s.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server (SIGCONT).
func (s *Server) Thaw() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Signal(sig)
}

// Close kills the server and waits for it to exit.
func (s *Server) Close() { s.kill() }

// Main is a TestMain body: it starts one Server in a temporary directory, stores it in *srv, runs the
// tests, stops the server and returns the exit code for os.Exit. When redis-server is not on PATH it
// leaves *srv nil and runs the tests (which skip through [Need]), unless the environment variable CI is
// non-empty: then it fails without running them.
func Main(m *testing.M, srv **Server) int {
	if _, err := exec.LookPath(Binary); err != nil {
		if os.Getenv("CI") != "" {
			fmt.Fprintf(os.Stderr, "redistest: %s is required when CI is set: %v\n", Binary, err)
			return 1
		}
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "redistest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	s, err := Start(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	*srv = s
	return m.Run()
}

// New starts a Server of the test's own in tb.TempDir and kills it at cleanup. Use it for a test that
// kills or freezes its server. It skips tb when redis-server is not on PATH and CI is empty, and fails
// it when CI is set.
func New(tb testing.TB) *Server {
	tb.Helper()
	if _, err := exec.LookPath(Binary); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("redistest: %s is required when CI is set: %v", Binary, err)
		}
		tb.Skipf("%s not on PATH (set CI to make this a failure)", Binary)
	}
	s, err := Start(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Need skips the test when s is nil, that is when [Main] found no redis-server and CI is not set.
func Need(tb testing.TB, s *Server) {
	tb.Helper()
	if s == nil {
		tb.Skipf("%s not on PATH (set CI to make this a failure)", Binary)
	}
}
