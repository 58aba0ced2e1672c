package sip

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Default values used when the corresponding Config field is zero.
const (
	DefaultListenAddr  = "127.0.0.1:0"
	DefaultUserAgent   = "voiceotp"
	DefaultFromUser    = "voiceotp"
	DefaultRingTimeout = 60 * time.Second
	DefaultCancelWait  = 4 * time.Second
)

// allowed is the Allow header value (RFC 3261 §20.5): the methods this UA
// handles.
const allowed = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"

// strayWindow is how long after giving up on an INVITE we still answer a late
// 2xx for it with ACK and BYE: 64*T1, the time a UAS retransmits a 2xx
// (RFC 3261 §13.3.1.4).
const strayWindow = 32 * time.Second

// Config configures a UA. The zero value is usable: a UA on an ephemeral
// loopback port. The UA owns one UDP socket which is both the listening socket
// and the source of every request it sends over UDP (Via with rport,
// RFC 3581), so peers reply to the address they see. Requests to TCP and TLS
// trunks go over connections the UA dials (see ListenTCP).
type Config struct {
	// ListenAddr is the UDP "host:port" to bind. If empty, "127.0.0.1:0" (an
	// ephemeral loopback port) is used.
	ListenAddr string
	// AdvertiseHost is the host put in Via, Contact and (by default) From. If
	// empty, the listening IP is used; it must then not be unspecified
	// (0.0.0.0 or ::), or NewUA fails.
	AdvertiseHost string
	// UserAgent is the User-Agent header value. If empty, "voiceotp" is used.
	UserAgent string
	// FromUser is the user part of the From URI, i.e. the caller ID. If
	// empty, "voiceotp" is used. Only URI-safe characters are accepted.
	FromUser string
	// FromDomain is the host part of the From URI. If empty, the advertised
	// host is used.
	FromDomain string
	// Username and Password answer one 401/407 digest challenge per call
	// (RFC 3261 §22.2, RFC 8760). If Username is empty no credentials are
	// sent and a challenge fails the call with ErrAuth.
	Username string
	Password string
	// CancelWait bounds how long Dial waits, after sending CANCEL, for the
	// final response to the INVITE (normally 487), and how long it waits for
	// the BYE that ends a 2xx which crossed the CANCEL. If zero, 4s is used.
	CancelWait time.Duration
	// Logger receives the UA's logs. If nil, logs are discarded. Passwords
	// and Authorization header values are never logged; message bodies only
	// with Trace.
	Logger *slog.Logger
	// ListenTCP, if set, is a TCP "host:port" on which the UA also accepts
	// SIP connections (RFC 3261 §18); Contact and Via of requests sent over
	// TCP then carry its port. Outbound TCP to a trunk works without it: the
	// UA dials the trunk and advertises that connection's local address, so
	// the trunk's requests come back over the same connection. If empty, no
	// TCP listener is opened.
	ListenTCP string
	// ListenTLS is the same for TLS; it needs TLSCertFile and TLSKeyFile.
	// If empty, no TLS listener is opened.
	ListenTLS string
	// TLSCertFile and TLSKeyFile are the PEM certificate chain and key the
	// ListenTLS listener presents. Unused without ListenTLS.
	TLSCertFile string
	TLSKeyFile  string
	// Trace logs every SIP message this UA sends or receives, in full, at
	// info level ("sip: trace sent" / "sip: trace received", attribute
	// sip_message), with Authorization and Proxy-Authorization values
	// replaced by "[redacted]". It is for debugging a trunk: bodies and
	// numbers are logged. If false, messages are not logged.
	Trace bool
	// OnInvite, if set, makes the UA accept incoming calls: it is called
	// once for each new INVITE (not for retransmissions), on a goroutine of
	// its own, with the call to ring, answer or reject (see Incoming). It
	// should hand the Incoming to the goroutine that owns the call and
	// return; the UA holds the INVITE's transaction until a final response
	// is sent, the caller cancels, or the UA closes. If nil, every incoming
	// INVITE is refused with 403 Forbidden.
	OnInvite func(*Incoming)
}

// UA is a SIP user agent that places outbound calls. It is safe for
// concurrent use; each Dial is independent. Close releases the socket.
type UA struct {
	cfg    Config
	log    *slog.Logger
	conn   *net.UDPConn
	pconn  net.PacketConn // conn, traced when Config.Trace is set
	laddr  netip.AddrPort
	via    sip.Addr // host:port advertised in Via and Contact
	sendAt sip.Addr // local address every request is sent from

	sua *sipgo.UserAgent
	srv *sipgo.Server
	cli *sipgo.Client

	contact sip.ContactHeader

	streams map[Transport]*stream // tcp and tls; immutable after NewUA
	tracer  *tracer               // nil unless Config.Trace

	bg       context.Context // cancelled by Close; parent of background work
	bgCancel context.CancelFunc
	serving  sync.WaitGroup // the read loops of every transport
	wg       sync.WaitGroup

	mu        sync.Mutex // guards closed, calls, abandoned, acks, dials
	closed    bool
	dials     map[string]*pendingDial // stream connections being dialled, by "transport ip:port"
	calls     map[dialogKey]*Call
	abandoned map[string]*sip.Request     // Call-ID → INVITE given up without a final response
	acks      map[dialogKey]chan struct{} // answered incoming calls awaiting ACK; closed when it arrives
}

// NewUA validates cfg, binds the UDP socket (and the optional TCP and TLS
// listeners) and starts serving them. The socket is bound before NewUA
// returns, so LocalAddr is known. The caller must Close the UA.
func NewUA(cfg Config) (*UA, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, ap, err := listenUDP(cfg.ListenAddr)
	if err != nil {
		return nil, err
	}
	host, err := advertisedHost(cfg.AdvertiseHost, ap)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if cfg.FromDomain == "" {
		cfg.FromDomain = host
	}
	ua := newUA(cfg, log, conn, ap, host)
	if err := ua.startSipgo(host, ap); err != nil {
		ua.bgCancel()
		conn.Close()
		return nil, err
	}
	if err := ua.openStreams(cfg); err != nil {
		ua.bgCancel()
		ua.sua.Close()
		conn.Close()
		return nil, err
	}
	ua.route()
	ua.serveUDP()
	ua.serveStreams()
	log.Debug("sip: user agent listening", "addr", ap.String())
	return ua, nil
}

// check fills the zero fields of cfg that have defaults and rejects values
// that cannot go into a header.
func (cfg *Config) check() error {
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = DefaultListenAddr
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	if cfg.FromUser == "" {
		cfg.FromUser = DefaultFromUser
	}
	if cfg.CancelWait <= 0 {
		cfg.CancelWait = DefaultCancelWait
	}
	if !validToken(cfg.UserAgent) {
		return fmt.Errorf("sip: invalid UserAgent %q", cfg.UserAgent)
	}
	if !validUser(cfg.FromUser) {
		return fmt.Errorf("sip: invalid FromUser %q", cfg.FromUser)
	}
	if cfg.FromDomain != "" && !validHost(cfg.FromDomain) {
		return fmt.Errorf("sip: invalid FromDomain %q", cfg.FromDomain)
	}
	if cfg.AdvertiseHost != "" && !validHost(cfg.AdvertiseHost) {
		return fmt.Errorf("sip: invalid AdvertiseHost %q", cfg.AdvertiseHost)
	}
	if cfg.Username != "" && !validToken(cfg.Username) {
		return errors.New("sip: invalid Username: control characters, quotes or backslashes")
	}
	return nil
}

// listenUDP binds the UA's UDP socket and returns it with its bound address
// (an IPv4-mapped address unmapped).
func listenUDP(addr string) (*net.UDPConn, netip.AddrPort, error) {
	laddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("sip: listen address: %w", err)
	}
	conn, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("sip: listen: %w", err)
	}
	ap := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	return conn, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// advertisedHost is the host for Via, Contact and From: advertise if set,
// else the listening IP, which must then be a specific address.
func advertisedHost(advertise string, ap netip.AddrPort) (string, error) {
	if advertise != "" {
		return advertise, nil
	}
	if ap.Addr().IsUnspecified() {
		return "", fmt.Errorf("sip: listening on unspecified address %s: set Config.AdvertiseHost", ap)
	}
	return ap.Addr().String(), nil
}

// newUA builds the UA's own state around its bound socket; nothing is served yet.
func newUA(cfg Config, log *slog.Logger, conn *net.UDPConn, ap netip.AddrPort, host string) *UA {
	ua := &UA{
		cfg:       cfg,
		log:       log,
		conn:      conn,
		laddr:     ap,
		pconn:     conn,
		via:       sip.Addr{Hostname: host, Port: int(ap.Port())},
		sendAt:    sip.Addr{IP: net.IP(ap.Addr().AsSlice()), Port: int(ap.Port()), Hostname: ap.Addr().String()},
		calls:     make(map[dialogKey]*Call),
		abandoned: make(map[string]*sip.Request),
		acks:      make(map[dialogKey]chan struct{}),
		dials:     make(map[string]*pendingDial),
	}
	if cfg.Trace {
		ua.tracer = &tracer{log: log}
		ua.pconn = tracePacketConn{PacketConn: conn, tr: ua.tracer}
	}
	ua.bg, ua.bgCancel = context.WithCancel(context.Background())
	ua.contact = sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: cfg.FromUser, Host: host, Port: int(ap.Port())}}
	return ua
}

// startSipgo creates the sipgo user agent, server and client the UA sends
// and receives through. On error it closes what it created, not the socket.
func (ua *UA) startSipgo(host string, ap netip.AddrPort) error {
	// sipgo logs parse failures with the raw datagram; redact message data.
	sglog := slog.New(redactHandler{ua.log.Handler()}).With("component", "sipgo")
	var err error
	ua.sua, err = sipgo.NewUA(
		sipgo.WithUserAgent(ua.cfg.UserAgent),
		sipgo.WithUserAgentHostname(ua.cfg.FromDomain),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(sglog)),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(sglog),
			sip.WithTransactionLayerUnhandledResponseHandler(ua.onStrayResponse),
		),
	)
	if err != nil {
		return fmt.Errorf("sip: %w", err)
	}
	ua.srv, err = sipgo.NewServer(ua.sua, sipgo.WithServerLogger(sglog))
	if err != nil {
		ua.sua.Close()
		return fmt.Errorf("sip: %w", err)
	}
	ua.cli, err = sipgo.NewClient(ua.sua, sipgo.WithClientLogger(sglog),
		sipgo.WithClientHostname(host), sipgo.WithClientPort(int(ap.Port())), sipgo.WithClientNAT())
	if err != nil {
		ua.sua.Close()
		return fmt.Errorf("sip: %w", err)
	}
	if ua.tracer != nil {
		// Registered before any transport serves, so no read races it.
		ua.sua.TransportLayer().OnMessage(ua.tracer.received)
	}
	return nil
}

// route registers the UA's handler for each method it answers.
func (ua *UA) route() {
	ua.srv.OnBye(ua.onBye)
	ua.srv.OnInfo(ua.onInfo)
	ua.srv.OnOptions(ua.onOptions)
	ua.srv.OnInvite(ua.onInvite)
	ua.srv.OnCancel(ua.onCancel)
	ua.srv.OnAck(ua.onAck)
	ua.srv.OnNoRoute(ua.onNoRoute)
}

// serveUDP starts serving the UDP socket, which is also the source of every
// request sent over UDP.
func (ua *UA) serveUDP() {
	// sipgo sends a request from the listening socket only if that socket is
	// already in the UDP connection pool under our local address (requests
	// carry Laddr, see finish); otherwise it dials a new ephemeral socket.
	// ServeUDP adds it from its own goroutine, so add it now to close the
	// race with a Dial right after NewUA.
	ua.sua.TransportLayer().Pool("udp").Add(ua.sendAt.String(), &sip.UDPConnection{
		PacketConn: ua.pconn, PacketAddr: ua.conn.LocalAddr().String(), Listener: true,
	})
	ua.serving.Add(1)
	go func() {
		defer ua.serving.Done()
		if err := ua.srv.ServeUDP(ua.pconn); err != nil {
			ua.log.Error("sip: serve", "error", err)
		}
	}()
}

// LocalAddr returns the bound UDP address.
func (ua *UA) LocalAddr() netip.AddrPort { return ua.laddr }

// Close stops serving and closes the socket. Established calls are not hung
// up (no BYE is sent; hang them up first); their Done channels are closed.
// Pending transactions are terminated, so a Dial in progress returns. Close is
// idempotent.
func (ua *UA) Close() error {
	ua.mu.Lock()
	if ua.closed {
		ua.mu.Unlock()
		return nil
	}
	ua.closed = true
	calls := make([]*Call, 0, len(ua.calls))
	for _, c := range ua.calls {
		calls = append(calls, c)
	}
	ua.mu.Unlock()

	for _, c := range calls {
		c.end("local")
	}
	ua.bgCancel()
	ua.closeStreams()
	err := ua.sua.Close()
	if cerr := ua.conn.Close(); err == nil {
		err = cerr
	}
	ua.serving.Wait()
	ua.wg.Wait()
	return err
}

func (ua *UA) isClosed() bool {
	ua.mu.Lock()
	defer ua.mu.Unlock()
	return ua.closed
}

// finish is the sipgo request option for every request this UA sends: a Via
// with our advertised address, a fresh branch and rport (RFC 3261 §8.1.1.7,
// RFC 3581) unless one is set (prepare sets it for TCP and TLS), and, over
// UDP, the listening socket as source.
func (ua *UA) finish(_ *sipgo.Client, r *sip.Request) error {
	if r.Via() == nil {
		via := &sip.ViaHeader{
			ProtocolName:    "SIP",
			ProtocolVersion: "2.0",
			Transport:       "UDP",
			Host:            ua.via.Hostname,
			Port:            ua.via.Port,
			Params:          sip.NewParams(),
		}
		via.Params.Add("branch", sip.RFC3261BranchMagicCookie+randToken())
		via.Params.Add("rport", "")
		r.PrependHeader(via)
	}
	if r.Transport() == "UDP" {
		r.Laddr = ua.sendAt
	}
	if r.ContentLength() == nil {
		r.SetBody(r.Body())
	}
	return nil
}

// register records an established call so in-dialog requests find it.
func (ua *UA) register(c *Call) bool {
	ua.mu.Lock()
	defer ua.mu.Unlock()
	if ua.closed {
		return false
	}
	ua.calls[c.key] = c
	return true
}

func (ua *UA) unregister(c *Call) {
	ua.mu.Lock()
	defer ua.mu.Unlock()
	if ua.calls[c.key] == c {
		delete(ua.calls, c.key)
	}
}

func (ua *UA) lookup(req *sip.Request) *Call {
	k, ok := dialogKeyUAC(req)
	if !ok {
		return nil
	}
	ua.mu.Lock()
	defer ua.mu.Unlock()
	return ua.calls[k]
}

// abandon remembers an INVITE whose transaction we terminated without a final
// response, so that a late 2xx for it is ACKed and ended with BYE
// (RFC 3261 §13.2.2.4) instead of leaving the callee in a call.
func (ua *UA) abandon(inv *sip.Request) {
	id := inv.CallID().Value()
	ua.mu.Lock()
	if ua.closed {
		ua.mu.Unlock()
		return
	}
	ua.abandoned[id] = inv
	ua.mu.Unlock()
	time.AfterFunc(strayWindow, func() {
		ua.mu.Lock()
		delete(ua.abandoned, id)
		ua.mu.Unlock()
	})
}

// onStrayResponse receives responses that match no client transaction.
func (ua *UA) onStrayResponse(res *sip.Response) {
	cseq, callID := res.CSeq(), res.CallID()
	if cseq == nil || callID == nil || cseq.MethodName != sip.INVITE || !res.IsSuccess() {
		ua.log.Debug("sip: stray response ignored", "sip_status", res.StatusCode)
		return
	}
	ua.mu.Lock()
	inv := ua.abandoned[callID.Value()]
	ua.mu.Unlock()
	if inv == nil {
		ua.log.Debug("sip: stray 2xx matches no call", "call_id", callID.Value())
		return
	}
	ua.goEndStray(inv, res)
}

// goEndStray ACKs and BYEs, in the background, a 2xx that established a
// dialog nobody wants: a late answer, or a second fork (RFC 3261 §13.2.2.4).
func (ua *UA) goEndStray(inv *sip.Request, res *sip.Response) {
	ua.mu.Lock()
	defer ua.mu.Unlock()
	if ua.closed {
		return
	}
	d := newDialog(inv, res)
	d.transport = Transport(strings.ToLower(inv.Transport()))
	ua.wg.Add(1)
	go func() {
		defer ua.wg.Done()
		ctx, cancel := context.WithTimeout(ua.bg, ua.cfg.CancelWait)
		defer cancel()
		ua.endUnwanted(ctx, d)
	}()
}

// endUnwanted ACKs the 2xx that created d and then sends BYE in it,
// waiting for the BYE's final response until ctx ends.
func (ua *UA) endUnwanted(ctx context.Context, d *dialog) {
	log := ua.log.With("call_id", d.callID)
	ack := d.ack(ua)
	if err := ua.prepare(ctx, ack, d.transport, d.tls); err != nil {
		log.Warn("sip: ACK for unwanted 2xx failed", "error", err)
	} else if err := ua.cli.WriteRequest(ack, ua.finish); err != nil {
		log.Warn("sip: ACK for unwanted 2xx failed", "error", err)
	}
	status, err := ua.sendBye(ctx, d, d.inviteCSeq+1)
	if err != nil {
		log.Warn("sip: BYE for unwanted 2xx failed", "error", err)
		return
	}
	log.Info("sip: unwanted 2xx ended with BYE", "sip_status", status)
}

// sendBye sends BYE in d (RFC 3261 §15.1.1) and waits for its final response
// until ctx ends or the transaction times out.
func (ua *UA) sendBye(ctx context.Context, d *dialog, cseq uint32) (int, error) {
	bye := d.request(ua, sip.BYE, cseq)
	if err := ua.prepare(ctx, bye, d.transport, d.tls); err != nil {
		return 0, err
	}
	res, err := ua.cli.Do(ctx, bye, ua.finish)
	if err != nil {
		return 0, err
	}
	return res.StatusCode, nil
}

func (ua *UA) respond(req *sip.Request, tx sip.ServerTransaction, code int, reason string, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	res.AppendHeader(sip.NewHeader("User-Agent", ua.cfg.UserAgent))
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		ua.log.Debug("sip: respond failed", "method", string(req.Method), "sip_status", code, "error", err)
	}
}

// onBye answers a BYE: 200 and the call ends if it matches a dialog
// (RFC 3261 §15.1.2), 481 otherwise.
func (ua *UA) onBye(req *sip.Request, tx sip.ServerTransaction) {
	c := ua.lookup(req)
	if c == nil {
		ua.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	ua.respond(req, tx, 200, "OK")
	if _, ok := c.end("remote"); ok {
		ua.log.Info("sip: remote hung up", "call_id", c.callID)
	}
}

// dtmfAccept lists the INFO bodies this UA understands.
const dtmfAccept = "application/dtmf-relay, application/dtmf"

// onInfo answers INFO (RFC 6086 §4.2.2): 481 outside a dialog; 200 for an
// INFO without a body; for a DTMF body (application/dtmf-relay or
// application/dtmf), 200 and the digit goes to Call.Digits, or 400 if the
// body does not parse (no digit); 415 with Accept for any other body
// (RFC 6086 §4.2.2, RFC 3261 §21.4.13). Retransmissions are absorbed by the
// server transaction, so one INFO yields at most one digit.
func (ua *UA) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	c := ua.lookup(req)
	if c == nil {
		ua.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	body := req.Body()
	if len(body) == 0 {
		ua.respond(req, tx, 200, "OK")
		return
	}
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if mt != "application/dtmf-relay" && mt != "application/dtmf" {
		ua.respond(req, tx, 415, "Unsupported Media Type", sip.NewHeader("Accept", dtmfAccept))
		return
	}
	digit, dur, err := ParseDTMFInfo(ct, body)
	if err != nil {
		ua.log.Info("sip: INFO with a bad DTMF body", "call_id", c.callID, "error", err)
		ua.respond(req, tx, 400, "Bad DTMF Body")
		return
	}
	ua.respond(req, tx, 200, "OK")
	c.deliverDigit(InfoDigit{Digit: digit, At: time.Now(), Duration: dur})
}

// onOptions answers OPTIONS with 200 and our capabilities (RFC 3261 §11.2).
func (ua *UA) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	ua.respond(req, tx, 200, "OK",
		sip.NewHeader("Allow", allowed),
		sip.NewHeader("Accept", "application/sdp"))
}

// onInvite passes a new incoming call to Config.OnInvite, or refuses it with
// 403 when that is nil (a UA that only places calls). In-dialog re-INVITEs
// are refused, leaving the session unchanged (RFC 3261 §14.2).
func (ua *UA) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		if ua.lookup(req) == nil {
			ua.respond(req, tx, 481, "Call/Transaction Does Not Exist")
			return
		}
		ua.respond(req, tx, 488, "Not Acceptable Here")
		return
	}
	if ua.cfg.OnInvite != nil && !ua.isClosed() {
		ua.onIncoming(req, tx)
		return
	}
	ua.respond(req, tx, 403, "Forbidden")
}

// onCancel sees only CANCELs that matched no server transaction: 481
// (RFC 3261 §9.2).
func (ua *UA) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	ua.respond(req, tx, 481, "Call/Transaction Does Not Exist")
}

func (ua *UA) onNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	ua.respond(req, tx, 405, "Method Not Allowed", sip.NewHeader("Allow", allowed))
}

// randToken returns 26 random base32 characters (130 bits) for tags, branches
// and Call-IDs (RFC 3261 §19.3 asks for at least 32 random bits).
func randToken() string { return rand.Text() }

// redactHandler drops the "data" attribute sipgo attaches to parse errors
// (the raw datagram, which may carry bodies and credentials).
type redactHandler struct{ slog.Handler }

func (h redactHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "data", "msg", "req", "res":
			a = slog.String(a.Key, "[redacted]")
		}
		nr.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, nr)
}

func (h redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return redactHandler{h.Handler.WithAttrs(as)}
}

func (h redactHandler) WithGroup(name string) slog.Handler {
	return redactHandler{h.Handler.WithGroup(name)}
}
