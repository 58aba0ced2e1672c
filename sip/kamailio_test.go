package sip

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// kamailio is a Kamailio process started by a test with
// testdata/kamailio/kamailio.cfg: a registrar and digest-authenticating
// proxy (user alice, password s3cret, realm voiceotp.test) on 127.0.0.1.
type kamailio struct {
	t       *testing.T
	port    int // UDP and TCP
	tlsPort int // 0 without TLS
	out     lockedBuffer
	done    chan struct{}
	err     error
}

// lockedBuffer collects a child's output from exec's copying goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// kamailioOptions configures startKamailio.
type kamailioOptions struct {
	calleePort int    // where authenticated INVITEs go (a SIPp UAS)
	tlsDir     string // with a CA-signed cert.pem and key.pem: listen on TLS too
}

func kamailioBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("kamailio"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/kamailio"); err == nil {
		return "/usr/sbin/kamailio" // Debian's path, off a normal user's PATH
	}
	if os.Getenv("CI") != "" {
		t.Fatal("kamailio not on PATH: .ci/run must install the kamailio (and kamailio-tls-modules) packages")
	}
	t.Skip("kamailio not on PATH (apt-get install -y kamailio kamailio-tls-modules)")
	return ""
}

// freePort returns a port free on 127.0.0.1 for both UDP and TCP a moment
// ago.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		u.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// startKamailio runs Kamailio in the foreground for the test and stops it
// on cleanup. It returns once Kamailio answers OPTIONS on UDP.
func startKamailio(t *testing.T, opts kamailioOptions) *kamailio {
	t.Helper()
	bin := kamailioBin(t)
	cfg, err := filepath.Abs(filepath.Join("testdata", "kamailio", "kamailio.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	k := &kamailio{t: t, port: freePort(t), done: make(chan struct{})}
	callee := opts.calleePort
	if callee == 0 {
		callee = 9 // discard: INVITE tests give a real callee
	}
	args := []string{
		"-f", cfg, "-DD", "-E", "-S",
		"-Y", dir, "-P", filepath.Join(dir, "kamailio.pid"), "-w", dir,
		"-m", "32", "-M", "4", "-n", "1",
		"-l", fmt.Sprintf("udp:127.0.0.1:%d", k.port),
		"-l", fmt.Sprintf("tcp:127.0.0.1:%d", k.port),
		"-A", fmt.Sprintf(`CALLEE="sip:127.0.0.1:%d"`, callee),
	}
	if opts.tlsDir != "" {
		k.tlsPort = freePort(t)
		tmpl, err := os.ReadFile(filepath.Join("testdata", "kamailio", "tls.cfg.tmpl"))
		if err != nil {
			t.Fatal(err)
		}
		tlsCfg := strings.NewReplacer("{{CERT}}", filepath.Join(opts.tlsDir, "cert.pem"),
			"{{KEY}}", filepath.Join(opts.tlsDir, "key.pem")).Replace(string(tmpl))
		path := filepath.Join(dir, "tls.cfg")
		if err := os.WriteFile(path, []byte(tlsCfg), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-l", fmt.Sprintf("tls:127.0.0.1:%d", k.tlsPort),
			"-A", "WITH_TLS", "-A", fmt.Sprintf(`TLS_CFG="%s"`, path))
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = &k.out
	cmd.Stderr = &k.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kamailio: %v", err)
	}
	go func() {
		k.err = cmd.Wait()
		close(k.done)
	}()
	t.Cleanup(func() {
		// SIGTERM makes Kamailio stop its children and exit; kill the
		// process group we created only if it does not.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-k.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-k.done
		}
		if t.Failed() {
			t.Logf("kamailio output:\n%s", tail(k.out.String(), 6000))
		}
	})
	k.waitReady()
	return k
}

// waitReady sends OPTIONS until Kamailio answers, for at most 10 s.
func (k *kamailio) waitReady() {
	k.t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		k.t.Fatal(err)
	}
	defer c.Close()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: k.port}
	me := c.LocalAddr().String()
	buf := make([]byte, 4096)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case <-k.done:
			k.t.Fatalf("kamailio exited: %v\n%s", k.err, tail(k.out.String(), 4000))
		default:
		}
		msg := fmt.Sprintf("OPTIONS sip:127.0.0.1:%d SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\n"+
			"From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1:%d>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\n"+
			"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", k.port, me, randToken(), k.port, randToken())
		if _, err := c.WriteToUDP([]byte(msg), to); err != nil {
			k.t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, _, err := c.ReadFromUDP(buf); err == nil && bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200")) {
			return
		}
	}
	k.t.Fatalf("kamailio did not answer OPTIONS\n%s", tail(k.out.String(), 4000))
}

// uri returns the proxy's URI for transport ("udp", "tcp", "tls").
func (k *kamailio) uri(transport string) string {
	switch transport {
	case "tcp":
		return fmt.Sprintf("sip:127.0.0.1:%d;transport=tcp", k.port)
	case "tls":
		return fmt.Sprintf("sips:127.0.0.1:%d", k.tlsPort)
	}
	return fmt.Sprintf("sip:127.0.0.1:%d", k.port)
}

// optionsStatus sends an OPTIONS for user through Kamailio from a raw
// socket and returns the status of the final answer: Kamailio relays it to
// the user's registered contact, or answers 404 when there is none.
func (k *kamailio) optionsStatus(user string) int {
	k.t.Helper()
	p := newPeer(k.t)
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: k.port}
	p.send(to, fmt.Sprintf("OPTIONS sip:%s@127.0.0.1:%d SIP/2.0\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s\n"+
		"From: <sip:probe@127.0.0.1>;tag=1\nTo: <sip:%s@127.0.0.1>\nCall-ID: %s\nCSeq: 1 OPTIONS\n"+
		"Max-Forwards: 70\nContent-Length: 0\n\n", user, k.port, p.conn.LocalAddr(), randToken(), user, randToken()))
	for {
		res := p.readResponse()
		if res.StatusCode >= 200 {
			return res.StatusCode
		}
	}
}

// testPKI is a CA and a server certificate for 127.0.0.1 and
// kamailio.test signed by it, written as PEM into dir: ca.pem, cert.pem,
// key.pem.
func testPKI(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "voiceotp test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kamailio.test"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		DNSNames:     []string{"kamailio.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", "CERTIFICATE", caDER)
	write("cert.pem", "CERTIFICATE", leafDER)
	write("key.pem", "PRIVATE KEY", keyDER)
	return dir
}
