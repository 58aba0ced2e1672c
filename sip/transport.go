package sip

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TLSConfig is how a TLS trunk's certificate is verified (RFC 3261 §26.3.1,
// RFC 5922). The zero value verifies against the system roots and the
// trunk's host name.
type TLSConfig struct {
	// CAFile is a PEM bundle of the certificates that may sign the trunk's
	// certificate. If empty, the system roots are used.
	CAFile string
	// ServerName is the name sent as SNI and checked against the
	// certificate. If empty, the host of the next hop (the outbound proxy
	// if one is set, else the trunk) is used.
	ServerName string
	// InsecureSkipVerify accepts any certificate. It is only ever used when
	// set explicitly, and every connection made with it is logged at warn
	// level. Nothing falls back to it, or to cleartext, on its own.
	InsecureSkipVerify bool
}

// clientConfig loads c into a crypto/tls client configuration; host is the
// default ServerName.
func (c TLSConfig) clientConfig(host string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if cfg.ServerName == "" {
		cfg.ServerName = strings.Trim(host, "[]")
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate found", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	cfg.InsecureSkipVerify = c.InsecureSkipVerify
	return cfg, nil
}

// Stream connections (TCP and TLS, RFC 3261 §18.1.1). sipgo dials its own
// connections with one UA-wide TLS configuration and no way to observe the
// bytes; this package dials them itself instead, with each trunk's TLS
// settings, wraps them for tracing, and hands them to sipgo's transport layer
// as if a listener had accepted them (streamFeed). sipgo then reads them,
// matches responses to transactions and keeps them in its connection pool
// under the remote address, where the requests we send find them. Requests
// carry an explicit destination IP and transport (prepare), so sipgo neither
// resolves names nor dials on its own for a request we prepared.
//
// Contact and Via carry the local address of the connection (or of the
// ListenTCP/ListenTLS listener when one is configured), so a proxy sends
// requests for us back over the connection we opened (RFC 5923's connection
// reuse, which Kamailio and most SBCs apply to the source address).

// streamDialTimeout bounds the TCP connect and TLS handshake of one stream
// connection when the caller's context allows longer.
const streamDialTimeout = 10 * time.Second

// streamFeed is the net.Listener a sipgo transport serves: Accept returns the
// connections we dial (and those a real listener accepts).
type streamFeed struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newStreamFeed(addr net.Addr) *streamFeed {
	return &streamFeed{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (f *streamFeed) Accept() (net.Conn, error) {
	select {
	case c := <-f.conns:
		return c, nil
	case <-f.done:
		return nil, net.ErrClosed
	}
}

func (f *streamFeed) Close() error {
	f.once.Do(func() { close(f.done) })
	return nil
}

func (f *streamFeed) Addr() net.Addr { return f.addr }

// hand gives c to sipgo and waits until sipgo reads it (so it is in the
// pool), ctx ends or the feed closes.
func (f *streamFeed) hand(ctx context.Context, c *streamConn) error {
	select {
	case f.conns <- c:
	case <-f.done:
		c.Close()
		return ErrClosed
	case <-ctx.Done():
		c.Close()
		return context.Cause(ctx)
	}
	select {
	case <-c.reading:
		return nil
	case <-f.done:
		return ErrClosed
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// stream is one stream transport (tcp or tls) of a UA. Immutable after
// NewUA.
type stream struct {
	transport Transport
	feed      *streamFeed
	listener  net.Listener // nil without ListenTCP/ListenTLS
	port      int          // listener port, 0 without one
}

// streamConn is a TCP or TLS connection handed to sipgo: it reports the
// first Read (sipgo has pooled it) and traces what is written.
type streamConn struct {
	net.Conn
	network string // "TCP" or "TLS"
	tr      *tracer
	reading chan struct{}
	once    sync.Once
}

func newStreamConn(c net.Conn, network string, tr *tracer) *streamConn {
	return &streamConn{Conn: c, network: network, tr: tr, reading: make(chan struct{})}
}

func (c *streamConn) Read(b []byte) (int, error) {
	c.once.Do(func() { close(c.reading) })
	return c.Conn.Read(b)
}

func (c *streamConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err == nil {
		c.tr.sent(c.network, c.LocalAddr().String(), c.RemoteAddr().String(), b[:n])
	}
	return n, err
}

// tracePacketConn traces the datagrams written on the UDP socket.
type tracePacketConn struct {
	net.PacketConn
	tr *tracer
}

func (c tracePacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(b, addr)
	if err == nil {
		c.tr.sent("UDP", c.LocalAddr().String(), addr.String(), b[:n])
	}
	return n, err
}

// pendingDial is one stream connection being dialled; others wanting the
// same one wait on done.
type pendingDial struct {
	done  chan struct{}
	local netip.AddrPort
	err   error
}

// hop is the next hop of a request (RFC 3263 §4): the transport and the
// host and port of the first Route, or of the Request-URI without one.
type hop struct {
	transport Transport
	host      string
	port      int
}

// uriHop is the hop a URI designates: its transport parameter, TLS for a
// sips URI, else fallback; its port, else the transport's default.
func uriHop(u sip.Uri, fallback Transport) hop {
	h := hop{transport: fallback.orUDP(), host: u.Host, port: u.Port}
	if v, ok := u.UriParams.Get("transport"); ok {
		if t := Transport(strings.ToLower(v)); t.valid() && t != "" {
			h.transport = t
		}
	}
	if u.IsEncrypted() {
		h.transport = TransportTLS
	}
	if h.port == 0 {
		h.port = h.transport.defaultPort()
	}
	return h
}

// requestHop is the next hop of r: its first Route if it has one (loose
// routing, RFC 3261 §16.12), else its Request-URI. fallback is the
// transport when the URI names none: the transport of the dialog or trunk,
// which is what a trunk configured for TCP or TLS expects even from a URI
// without a transport parameter.
func requestHop(r *sip.Request, fallback Transport) hop {
	if rt := r.Route(); rt != nil {
		return uriHop(rt.Address, fallback)
	}
	return uriHop(r.Recipient, fallback)
}

// resolve returns the address of host: an IP literal as is, else the first
// IPv4 address of its A records, else the first of its AAAA records.
func resolve(ctx context.Context, host string) (netip.Addr, error) {
	host = strings.Trim(host, "[]")
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap(), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, ip := range ips {
		if ip.Unmap().Is4() {
			return ip.Unmap(), nil
		}
	}
	if len(ips) == 0 {
		return netip.Addr{}, fmt.Errorf("no address for %s", host)
	}
	return ips[0], nil
}

// prepare readies r to be sent: it finds the next hop (fallback is the
// transport when no URI names one), resolves it, opens (or reuses) the TCP
// or TLS connection to it, and sets r's transport and destination, a Via
// with the right transport and sent-by if r has none (RFC 3261 §18.1.1), and
// the Contact's port and transport. tc is the TLS client configuration for
// a TLS hop; nil verifies against the system roots and the hop's host.
//
// Errors are transport failures: the host does not resolve, the connection
// is refused, the TLS handshake or certificate verification fails.
func (ua *UA) prepare(ctx context.Context, r *sip.Request, fallback Transport, tc *tls.Config) error {
	h := requestHop(r, fallback)
	ip, err := resolve(ctx, h.host)
	if err != nil {
		return fmt.Errorf("sip: resolve %s: %w", h.host, err)
	}
	dest := netip.AddrPortFrom(ip, uint16(h.port))
	port := ua.via.Port
	if h.transport != TransportUDP {
		local, err := ua.streamConn(ctx, h, dest, tc)
		if err != nil {
			return err
		}
		port = int(local.Port())
		if st := ua.streams[h.transport]; st.port != 0 {
			port = st.port
		}
	}
	r.SetTransport(h.transport.upper())
	r.SetDestination(dest.String())
	if r.Via() == nil {
		via := &sip.ViaHeader{
			ProtocolName:    "SIP",
			ProtocolVersion: "2.0",
			Transport:       h.transport.upper(),
			Host:            ua.via.Hostname,
			Port:            port,
			Params:          sip.NewParams(),
		}
		via.Params.Add("branch", sip.RFC3261BranchMagicCookie+randToken())
		via.Params.Add("rport", "")
		r.PrependHeader(via)
	}
	if c := r.Contact(); c != nil && c.Address.Host == ua.via.Hostname {
		c.Address.Port = port
		if c.Address.UriParams == nil {
			c.Address.UriParams = sip.NewParams()
		}
		if h.transport == TransportUDP {
			c.Address.UriParams.Remove("transport")
		} else {
			c.Address.UriParams.Add("transport", string(h.transport))
		}
	}
	return nil
}

// streamConn returns the local address of a TCP or TLS connection to dest
// in sipgo's pool, dialling it first if there is none. Concurrent callers
// for one destination share one dial.
func (ua *UA) streamConn(ctx context.Context, h hop, dest netip.AddrPort, tc *tls.Config) (netip.AddrPort, error) {
	st := ua.streams[h.transport]
	if st == nil {
		return netip.AddrPort{}, fmt.Errorf("sip: transport %q not supported", string(h.transport))
	}
	pool := ua.sua.TransportLayer().Pool(string(h.transport))
	key := dest.String()
	for {
		if c := pool.Get(key); c != nil {
			la := c.LocalAddr()
			c.TryClose()
			if ap, err := netip.ParseAddrPort(la.String()); err == nil {
				return ap, nil
			}
		}
		ua.mu.Lock()
		if ua.closed {
			ua.mu.Unlock()
			return netip.AddrPort{}, ErrClosed
		}
		pd := ua.dials[string(h.transport)+" "+key]
		if pd != nil {
			ua.mu.Unlock()
			select {
			case <-pd.done:
			case <-ctx.Done():
				return netip.AddrPort{}, context.Cause(ctx)
			}
			if pd.err != nil {
				return netip.AddrPort{}, pd.err
			}
			continue // pooled now (or closed already: dial again)
		}
		pd = &pendingDial{done: make(chan struct{})}
		ua.dials[string(h.transport)+" "+key] = pd
		ua.mu.Unlock()

		pd.local, pd.err = ua.dialStream(ctx, st, h, dest, tc)
		ua.mu.Lock()
		delete(ua.dials, string(h.transport)+" "+key)
		ua.mu.Unlock()
		close(pd.done)
		return pd.local, pd.err
	}
}

// dialStream connects to dest (and does the TLS handshake, verifying the
// certificate) and hands the connection to sipgo.
func (ua *UA) dialStream(ctx context.Context, st *stream, h hop, dest netip.AddrPort, tc *tls.Config) (netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(ctx, streamDialTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", dest.String())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("sip: %s connect to %s: %w", h.transport, dest, err)
	}
	conn := raw
	if h.transport == TransportTLS {
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: strings.Trim(h.host, "[]")}
		}
		if tc.InsecureSkipVerify {
			ua.log.Warn("sip: TLS certificate NOT verified (insecure_skip_verify)", "peer", dest.String(), "server_name", tc.ServerName)
		}
		tconn := tls.Client(raw, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return netip.AddrPort{}, fmt.Errorf("sip: TLS handshake with %s (server name %q): %w", dest, tc.ServerName, err)
		}
		conn = tconn
	}
	local, err := netip.ParseAddrPort(conn.LocalAddr().String())
	if err != nil {
		conn.Close()
		return netip.AddrPort{}, fmt.Errorf("sip: local address: %w", err)
	}
	sc := newStreamConn(conn, h.transport.upper(), ua.tracer)
	if err := st.feed.hand(ctx, sc); err != nil {
		return netip.AddrPort{}, fmt.Errorf("sip: %s connection to %s: %w", h.transport, dest, err)
	}
	ua.log.Debug("sip: connected", "transport", string(h.transport), "peer", dest.String(), "local", local.String())
	return netip.AddrPortFrom(local.Addr().Unmap(), local.Port()), nil
}

// openStreams creates the TCP and TLS transports of ua and starts serving
// them (and the optional listeners).
func (ua *UA) openStreams(cfg Config) error {
	ua.streams = make(map[Transport]*stream)
	for _, t := range []Transport{TransportTCP, TransportTLS} {
		st := &stream{transport: t}
		addr := cfg.ListenTCP
		if t == TransportTLS {
			addr = cfg.ListenTLS
		}
		if addr != "" {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				ua.closeStreams()
				return fmt.Errorf("sip: listen %s: %w", t, err)
			}
			if t == TransportTLS {
				if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
					l.Close()
					ua.closeStreams()
					return errors.New("sip: ListenTLS needs TLSCertFile and TLSKeyFile")
				}
				cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
				if err != nil {
					l.Close()
					ua.closeStreams()
					return fmt.Errorf("sip: TLS certificate: %w", err)
				}
				l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
			}
			st.listener = l
			st.port = l.Addr().(*net.TCPAddr).Port
			st.feed = newStreamFeed(l.Addr())
		} else {
			st.feed = newStreamFeed(&net.TCPAddr{IP: net.IP(ua.laddr.Addr().AsSlice()), Port: 0})
		}
		ua.streams[t] = st
	}
	return nil
}

// serveStreams runs sipgo on the stream feeds, and the accept loops of the
// listeners; every goroutine ends when Close closes the feeds and listeners.
func (ua *UA) serveStreams() {
	for _, st := range ua.streams {
		serve := ua.srv.ServeTCP
		if st.transport == TransportTLS {
			serve = ua.srv.ServeTLS
		}
		ua.serving.Add(1)
		go func() {
			defer ua.serving.Done()
			if err := serve(st.feed); err != nil && !errors.Is(err, net.ErrClosed) {
				ua.log.Error("sip: serve", "transport", string(st.transport), "error", err)
			}
		}()
		if st.listener == nil {
			continue
		}
		ua.serving.Add(1)
		go func() {
			defer ua.serving.Done()
			for {
				c, err := st.listener.Accept()
				if err != nil {
					return
				}
				sc := newStreamConn(c, st.transport.upper(), ua.tracer)
				select {
				case st.feed.conns <- sc:
				case <-st.feed.done:
					c.Close()
					return
				}
			}
		}()
	}
}

func (ua *UA) closeStreams() {
	for _, st := range ua.streams {
		st.feed.Close()
		if st.listener != nil {
			st.listener.Close()
		}
	}
}

// tracer logs every SIP message a UA sends or receives (Config.Trace) at
// info level, with credentials redacted. A nil *tracer logs nothing.
type tracer struct {
	log *slog.Logger
}

func (t *tracer) sent(network, local, remote string, b []byte) {
	if t == nil {
		return
	}
	t.log.Info("sip: trace sent", "transport", network, "local", local, "remote", remote,
		"sip_message", redactMessage(string(b)))
}

// received is a sipgo transport-layer message handler: it sees every parsed
// message, on every transport. It runs after the transaction layer's
// handler, so a reply can be logged before the message that caused it.
func (t *tracer) received(m sip.Message) {
	t.log.Info("sip: trace received", "transport", m.Transport(), "remote", m.Source(),
		"sip_message", redactMessage(m.String()))
}

// redactMessage returns a SIP message with the values of its Authorization
// and Proxy-Authorization headers (and their continuation lines) replaced by
// "[redacted]": they carry a digest response computed from the password
// (RFC 3261 §22.2). WWW-Authenticate and Proxy-Authenticate challenges carry
// no secret and are kept. The body is left as is.
func redactMessage(msg string) string {
	var b strings.Builder
	b.Grow(len(msg))
	rest := msg
	inAuth, started := false, false
	for rest != "" {
		line, tail, found := strings.Cut(rest, "\n")
		rest = tail
		bare := strings.TrimSuffix(line, "\r")
		if bare == "" && found && started {
			// End of the headers: copy the body unchanged.
			b.WriteString(line)
			b.WriteString("\n")
			b.WriteString(rest)
			break
		}
		started = started || bare != ""
		switch {
		case inAuth && (strings.HasPrefix(bare, " ") || strings.HasPrefix(bare, "\t")):
			continue // folded continuation of a redacted header (RFC 3261 §7.3.1)
		default:
			inAuth = false
			name, _, ok := strings.Cut(bare, ":")
			if n := strings.TrimSpace(name); ok && (strings.EqualFold(n, "Authorization") || strings.EqualFold(n, "Proxy-Authorization")) {
				inAuth = true
				b.WriteString(n)
				b.WriteString(": [redacted]")
				if strings.HasSuffix(line, "\r") {
					b.WriteString("\r")
				}
				if found {
					b.WriteString("\n")
				}
				continue
			}
		}
		b.WriteString(line)
		if found {
			b.WriteString("\n")
		}
	}
	return b.String()
}
