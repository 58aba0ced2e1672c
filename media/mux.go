package media

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// ErrMuxClosed is returned by the Run of a [Sender] or [Receiver] whose [Mux] was closed under it.
var ErrMuxClosed = errors.New("media: mux closed")

// Dense-mode defaults.
const (
	// DefaultMuxBatch is how many packets one sendmmsg or recvmmsg moves at most when MuxConfig.Batch
	// is zero.
	DefaultMuxBatch = 64
	// DefaultMuxSocketBuffer is the SO_SNDBUF and SO_RCVBUF asked for each lane socket when
	// MuxConfig.SocketBuffer is zero: a lane carries hundreds of calls, and a 20 ms burst of all of
	// them must fit in the kernel's queue.
	DefaultMuxSocketBuffer = 4 << 20

	// lanePhases splits the 20 ms grid into ticks: a lane's streams are spread over the phases so
	// that each tick sends a quarter of them, rather than every stream at once.
	lanePhases = 4
	laneTick   = FrameDuration / lanePhases
	// sweepEvery is how often a lane's read loop wakes, with or without traffic, to end the
	// Receivers that reached their inactivity timeout.
	sweepEvery = 100 * time.Millisecond
	// packetBufSize fits one packet a Sender builds: header and one G.711 frame.
	packetBufSize = rtpHeaderSize + FrameSize
)

// Port is one call's RTP endpoint: the local address its SDP announces, and the Sender and Receiver of
// its stream. [OpenPort] gives a call a socket of its own; [Mux.Open] gives it a share of a socket that
// many calls use.
type Port interface {
	// Addr is the local address of the socket; its IP is the one bound, which may be unspecified.
	Addr() netip.AddrPort
	// NewSender returns a Sender of the stream to dst (see [NewSender]).
	NewSender(dst netip.AddrPort, cfg SenderConfig) *Sender
	// NewReceiver returns a Receiver of the stream from cfg.Remote (see [NewReceiver]).
	NewReceiver(cfg ReceiverConfig) *Receiver
	// Close releases the port once its Sender's and Receiver's Run have returned: it closes a socket
	// of its own, and gives back its share of a Mux lane. Calling it again does nothing.
	Close() error
}

// OpenPort binds a socket of the call's own with [ListenRTP] and returns it as a Port.
func OpenPort(ip netip.Addr, r PortRange) (Port, error) {
	conn, err := ListenRTP(ip, r)
	if err != nil {
		return nil, err
	}
	return &socketPort{conn: conn, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort()}, nil
}

// socketPort is a Port with a socket of its own.
type socketPort struct {
	conn *net.UDPConn
	addr netip.AddrPort
	once sync.Once
	err  error
}

func (p *socketPort) Addr() netip.AddrPort { return p.addr }
func (p *socketPort) NewSender(dst netip.AddrPort, cfg SenderConfig) *Sender {
	return NewSender(p.conn, dst, cfg)
}
func (p *socketPort) NewReceiver(cfg ReceiverConfig) *Receiver { return NewReceiver(p.conn, cfg) }
func (p *socketPort) Close() error {
	p.once.Do(func() { p.err = p.conn.Close() })
	return p.err
}

// MuxConfig configures a [Mux].
type MuxConfig struct {
	// IP is the address the lane sockets bind; its family is the family of every stream. Required:
	// 0.0.0.0 binds every IPv4 address.
	IP netip.Addr
	// Ports is the range the lanes take their even ports from, as [ListenRTP] does.
	Ports PortRange
	// Lanes is the number of sockets, each with one pacing and one read goroutine. Zero means
	// runtime.GOMAXPROCS(0): one per core Go may use.
	Lanes int
	// Batch is the most packets one sendmmsg or recvmmsg moves; zero means [DefaultMuxBatch].
	Batch int
	// SocketBuffer is the SO_SNDBUF and SO_RCVBUF asked for each lane socket, in bytes; zero means
	// [DefaultMuxSocketBuffer]. Linux caps what it grants at net.core.rmem_max and wmem_max unless
	// the process may force more (CAP_NET_ADMIN), which it tries; [MuxStats] shows what was granted.
	SocketBuffer int
}

// MuxStats are a Mux's counters since it was made, summed over its lanes.
type MuxStats struct {
	Lanes       int    // sockets
	Senders     int    // Senders running now
	Receivers   int    // Receivers running now
	Packets     uint64 // packets written
	WriteCalls  uint64 // sendmmsg calls (or writes, where the system has no sendmmsg)
	Received    uint64 // datagrams read
	ReadCalls   uint64 // recvmmsg calls that returned datagrams
	Unmatched   uint64 // datagrams from an address, or with an SSRC, that no Receiver of the lane expects
	LateTicks   uint64 // pacing rounds that began more than 5 ms after their tick
	RecvBuffer  int    // SO_RCVBUF granted to a lane socket, in bytes (as the kernel reports it)
	WriteErrors uint64 // packets whose write failed; each ends its Sender's Run
}

// Mux is the dense media mode: a few UDP sockets ("lanes", one per core by default) each carrying the
// RTP of many calls, instead of a socket and two goroutines per call.
//
// Each lane has one pacing goroutine, which wakes every 5 ms on absolute deadlines and sends the due
// packets of a quarter of its Senders (every Sender is due once per 20 ms, on its own phase of the grid)
// with batched sendmmsg through golang.org/x/net/ipv4, and one read goroutine, which takes datagrams
// in batches with recvmmsg and hands each to the Receiver it belongs to. A datagram belongs to the
// Receiver whose remote address it came from; when several of a lane's Receivers expect the same
// remote address (another dense endpoint, or an SBC that sends every call from one port), the SSRC
// tells them apart: the one the remote announced in its SDP (a=ssrc, RFC 5576; [ReceiverConfig.SSRC]),
// else the first SSRC seen while the Receiver was alone on that address, else the first unclaimed SSRC
// in order of registration. The last rule is a guess that can pair two streams wrongly when both start
// at once; a dense endpoint should announce its SSRCs, as ours do.
//
// Receiving uses the recvmmsg system call directly (golang.org/x/sys/unix) on 64-bit Linux and one
// read per datagram elsewhere: golang.org/x/net/ipv4's ReadBatch allocates a net.UDPAddr for every
// datagram, and the per-packet path must allocate nothing. Sending uses x/net's WriteBatch, which does
// not allocate.
//
// A Mux is safe for concurrent use. Close it after every Run of its Senders and Receivers has returned
// (a Run still going returns [ErrMuxClosed]).
type Mux struct {
	lanes []*lane
	once  sync.Once
}

// NewMux binds the lane sockets and starts their goroutines. It returns an error when cfg.IP is not
// set or a socket cannot be bound; then nothing is left open.
func NewMux(cfg MuxConfig) (*Mux, error) {
	if !cfg.IP.IsValid() {
		return nil, errors.New("media: mux needs an ip to bind")
	}
	n := cfg.Lanes
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	batch := cfg.Batch
	if batch <= 0 {
		batch = DefaultMuxBatch
	}
	batch = min(batch, 1024)
	bufSize := cfg.SocketBuffer
	if bufSize <= 0 {
		bufSize = DefaultMuxSocketBuffer
	}
	m := &Mux{}
	for range n {
		conn, err := ListenRTP(cfg.IP, cfg.Ports)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("media: mux lane: %w", err)
		}
		m.lanes = append(m.lanes, newLane(conn, batch, bufSize))
	}
	for _, l := range m.lanes {
		go l.sendLoop()
		go l.readLoop()
	}
	return m, nil
}

// Open returns a share of the lane with the fewest open ports. It fails only once the Mux is closed.
func (m *Mux) Open() (Port, error) {
	var best *lane
	for _, l := range m.lanes {
		if best == nil || l.ports.Load() < best.ports.Load() {
			best = l
		}
	}
	select {
	case <-best.closed:
		return nil, ErrMuxClosed
	default:
	}
	best.ports.Add(1)
	return &lanePort{l: best}, nil
}

// Close closes every lane socket and stops the lane goroutines; Runs still going return ErrMuxClosed.
func (m *Mux) Close() error {
	m.once.Do(func() {
		for _, l := range m.lanes {
			l.close()
		}
	})
	return nil
}

// Stats returns the counters summed over the lanes. Safe for concurrent use.
func (m *Mux) Stats() MuxStats {
	st := MuxStats{Lanes: len(m.lanes)}
	for _, l := range m.lanes {
		l.smu.Lock()
		st.Senders += l.nsend
		l.smu.Unlock()
		l.rmu.Lock()
		st.Receivers += l.nrecv
		l.rmu.Unlock()
		st.Packets += l.packets.Load()
		st.WriteCalls += l.writeCalls.Load()
		st.Received += l.received.Load()
		st.ReadCalls += l.readCalls.Load()
		st.Unmatched += l.unmatched.Load()
		st.LateTicks += l.lateTicks.Load()
		st.WriteErrors += l.writeErrors.Load()
		st.RecvBuffer = l.recvBuffer
	}
	return st
}

// lanePort is one call's share of a lane.
type lanePort struct {
	l      *lane
	closed atomic.Bool
}

func (p *lanePort) Addr() netip.AddrPort { return p.l.addr }
func (p *lanePort) NewSender(dst netip.AddrPort, cfg SenderConfig) *Sender {
	s := newSender(nil, dst, cfg)
	s.lane = p.l
	return s
}
func (p *lanePort) NewReceiver(cfg ReceiverConfig) *Receiver {
	r := NewReceiver(nil, cfg)
	r.lane = p.l
	return r
}
func (p *lanePort) Close() error {
	if p.closed.CompareAndSwap(false, true) {
		p.l.ports.Add(-1)
	}
	return nil
}

// batchWriter is the sendmmsg of an ipv4.PacketConn or ipv6.PacketConn (their Message types are one).
type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// lane is one shared socket with its pacing loop and its read loop.
type lane struct {
	conn       *net.UDPConn
	addr       netip.AddrPort
	bw         batchWriter
	closed     chan struct{} // closed by close
	closeOnce  sync.Once
	ports      atomic.Int64 // open lanePorts, for Open's balance
	recvBuffer int

	smu    sync.Mutex // guards phases, nsend and t0, and is held for a whole pacing round
	phases [lanePhases][]*laneSender
	nsend  int
	t0     time.Time     // origin of the tick grid
	wake   chan struct{} // capacity 1: a Sender arrived at an idle lane

	// Owned by the pacing loop.
	bufs [][packetBufSize]byte
	msgs []ipv4.Message
	pend []pendingPacket

	rmu     sync.Mutex // guards byAddr, nrecv and readErr; held while the read loop hands out a batch
	byAddr  map[netip.AddrPort][]*Receiver
	nrecv   int
	readErr error // why the read loop stopped; nil while it runs

	packets, writeCalls, received, readCalls, unmatched, lateTicks, writeErrors atomic.Uint64
	batch                                                                       int
}

// laneSender is a Sender's place on the lane's grid.
type laneSender struct {
	s     *Sender
	dst   *net.UDPAddr // made once: WriteBatch takes a net.Addr
	start time.Time    // deadline of slot 0, a tick of the sender's phase
	next  uint64       // the next slot to send
	phase int
	dead  bool       // a write failed; the pacing loop skips it until Run removes it
	err   chan error // capacity 1: the write error that ends Run
}

// pendingPacket is a packet in the batch being built, with what its Sender needs once it is written.
type pendingPacket struct {
	ls       *laneSender
	p        slotPacket
	deadline time.Time
}

func newLane(conn *net.UDPConn, batch, bufSize int) *lane {
	l := &lane{
		conn:   conn,
		addr:   conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		closed: make(chan struct{}),
		t0:     time.Now(),
		wake:   make(chan struct{}, 1),
		bufs:   make([][packetBufSize]byte, batch),
		msgs:   make([]ipv4.Message, batch),
		pend:   make([]pendingPacket, batch),
		byAddr: make(map[netip.AddrPort][]*Receiver),
		batch:  batch,
	}
	l.addr = netip.AddrPortFrom(l.addr.Addr().Unmap(), l.addr.Port())
	if l.addr.Addr().Is4() {
		l.bw = ipv4.NewPacketConn(conn)
	} else {
		l.bw = ipv6.NewPacketConn(conn)
	}
	for i := range l.msgs {
		l.msgs[i].Buffers = make([][]byte, 1)
	}
	_ = conn.SetReadBuffer(bufSize)
	_ = conn.SetWriteBuffer(bufSize)
	l.recvBuffer = forceSocketBuffers(conn, bufSize)
	return l
}

func (l *lane) close() {
	l.closeOnce.Do(func() {
		close(l.closed)
		_ = l.conn.Close()
	})
}

// runSender is Sender.Run on a lane: it puts s on the grid, waits, and takes it off.
func (l *lane) runSender(ctx context.Context, s *Sender) error {
	ls := &laneSender{s: s, dst: net.UDPAddrFromAddrPort(s.dst), err: make(chan error, 1)}
	l.smu.Lock()
	select {
	case <-l.closed:
		l.smu.Unlock()
		return ErrMuxClosed
	default:
	}
	idle := l.nsend == 0
	if idle {
		// Restart the grid at the present, so the pacing loop does not replay the idle time.
		l.t0 = time.Now()
	}
	ls.phase = 0
	for p := range l.phases {
		if len(l.phases[p]) < len(l.phases[ls.phase]) {
			ls.phase = p
		}
	}
	// The first tick of the phase in the future is the stream's slot 0.
	now := time.Now()
	k := int64(now.Sub(l.t0)/laneTick) + 1
	k += (int64(ls.phase) - k%lanePhases + lanePhases) % lanePhases
	ls.start = l.t0.Add(time.Duration(k) * laneTick)
	l.phases[ls.phase] = append(l.phases[ls.phase], ls)
	l.nsend++
	l.smu.Unlock()
	if idle {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}

	var err error
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case err = <-ls.err:
	case <-l.closed:
		err = ErrMuxClosed
	}
	l.smu.Lock()
	list := l.phases[ls.phase]
	for i, x := range list {
		if x == ls {
			list[i] = list[len(list)-1]
			list[len(list)-1] = nil
			l.phases[ls.phase] = list[:len(list)-1]
			break
		}
	}
	l.nsend--
	l.smu.Unlock()
	return err
}

// sendLoop is the lane's pacing goroutine: one round per 5 ms tick on absolute deadlines, each sending
// the due packets of one phase's Senders.
func (l *lane) sendLoop() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var k int64 // the next tick
	for {
		l.smu.Lock()
		n, t0 := l.nsend, l.t0
		l.smu.Unlock()
		if n == 0 {
			select {
			case <-l.wake:
				continue
			case <-l.closed:
				return
			}
		}
		tick := t0.Add(time.Duration(k) * laneTick)
		if d := time.Until(tick); d > laneTick || d < -maxBehind {
			// The grid restarted after an idle spell (the tick is far ahead), or the loop stalled (far
			// behind): go on from the present tick. Each Sender skips the slots it missed by itself
			// (see round).
			k = int64(time.Since(t0)/laneTick) + 1
			continue
		}
		if d := time.Until(tick); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-l.wake: // the grid may have restarted; work out the tick again
				timer.Stop()
				continue
			case <-l.closed:
				timer.Stop()
				return
			}
		}
		if late := time.Since(tick); late > lateThreshold {
			l.lateTicks.Add(1)
		}
		l.round(int(k%lanePhases), tick)
		k++
	}
}

// round sends, in batches, every packet due by tick from the Senders of one phase.
func (l *lane) round(phase int, tick time.Time) {
	l.smu.Lock()
	defer l.smu.Unlock()
	m := 0
	for _, ls := range l.phases[phase] {
		if ls.dead || tick.Before(ls.start) {
			continue
		}
		due := uint64(tick.Sub(ls.start) / FrameDuration)
		if due >= ls.next && time.Duration(due-ls.next)*FrameDuration > maxBehind {
			ls.s.skip(due - ls.next)
			ls.next = due
		}
		for ; ls.next <= due && !ls.dead; ls.next++ {
			if m == len(l.msgs) {
				l.flush(m)
				m = 0
			}
			p := ls.s.fill(l.bufs[m][:], ls.next)
			if p.err != nil {
				l.fail(ls, p, p.err)
				break
			}
			if p.n == 0 {
				continue
			}
			l.pend[m] = pendingPacket{ls: ls, p: p, deadline: ls.start.Add(time.Duration(ls.next) * FrameDuration)}
			l.msgs[m].Buffers[0] = l.bufs[m][:p.n]
			l.msgs[m].Addr = ls.dst
			m++
		}
	}
	l.flush(m)
}

// flush writes the first m packets of the batch and settles each with its Sender.
func (l *lane) flush(m int) {
	if m == 0 {
		return
	}
	now := time.Now()
	for i := 0; i < m; {
		n, err := l.bw.WriteBatch(l.msgs[i:m], 0)
		l.writeCalls.Add(1)
		n = max(0, min(n, m-i))
		for j := i; j < i+n; j++ {
			pp := l.pend[j]
			pp.ls.s.sent(pp.p, now.Sub(pp.deadline))
		}
		l.packets.Add(uint64(n))
		i += n
		if i < m && (err != nil || n == 0) {
			if err == nil {
				err = errors.New("sendmmsg wrote nothing")
			}
			// sendmmsg stops at the first message that fails: that one is lost, the rest go on.
			l.fail(l.pend[i].ls, l.pend[i].p, err)
			i++
		}
	}
	for j := range l.pend[:m] {
		l.pend[j] = pendingPacket{}
		l.msgs[j].Addr = nil
	}
}

// fail ends a Sender whose packet could not be built or written.
func (l *lane) fail(ls *laneSender, p slotPacket, err error) {
	l.writeErrors.Add(1)
	if ls.dead {
		if p.done != nil {
			close(p.done)
		}
		return
	}
	ls.dead = true
	ls.err <- ls.s.failed(p, err)
}

// runReceiver is Receiver.Run on a lane: it registers r with the read loop, waits, and unregisters it.
func (l *lane) runReceiver(ctx context.Context, r *Receiver) error {
	r.muxStop = make(chan error, 1)
	l.rmu.Lock()
	if l.readErr != nil {
		l.rmu.Unlock()
		return l.readErr
	}
	r.lastValid = time.Now()
	l.byAddr[r.remote] = append(l.byAddr[r.remote], r)
	l.nrecv++
	l.rmu.Unlock()

	var err error
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case err = <-r.muxStop:
	}
	l.rmu.Lock()
	l.remove(r)
	l.rmu.Unlock()
	return err
}

// remove takes r off the demultiplexing table, if it is still there. Caller holds rmu.
func (l *lane) remove(r *Receiver) {
	list := l.byAddr[r.remote]
	for i, x := range list {
		if x == r {
			copy(list[i:], list[i+1:]) // keep the order of registration, which latching follows
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			l.nrecv--
			break
		}
	}
	if len(list) == 0 {
		delete(l.byAddr, r.remote)
	} else {
		l.byAddr[r.remote] = list
	}
}

// stop ends r's Run with err and takes it off the table. Caller holds rmu.
func (l *lane) stop(r *Receiver, err error) {
	select {
	case r.muxStop <- err:
	default:
	}
	l.remove(r)
}

// readLoop is the lane's read goroutine: batches of datagrams, each handed to its Receiver, and a sweep
// for inactive Receivers every 100 ms.
func (l *lane) readLoop() {
	br := newBatchReader(l.conn, l.batch)
	lastSweep := time.Now()
	for {
		if err := l.conn.SetReadDeadline(time.Now().Add(sweepEvery)); err != nil {
			l.shut(err)
			return
		}
		n, err := br.read()
		now := br.now
		if err != nil && !errors.Is(err, errReadTimeout) {
			l.shut(err)
			return
		}
		if n > 0 {
			l.readCalls.Add(1)
			l.received.Add(uint64(n))
			l.rmu.Lock()
			for i := range n {
				b, from, at := br.packet(i)
				l.dispatch(b, from, at)
			}
			l.rmu.Unlock()
		}
		if now.Sub(lastSweep) >= sweepEvery {
			lastSweep = now
			l.sweep(now)
		}
	}
}

// shut ends every Receiver when the read loop stops: ErrMuxClosed after close, else the read error.
func (l *lane) shut(err error) {
	select {
	case <-l.closed:
		err = ErrMuxClosed
	default:
		err = fmt.Errorf("media: mux rtp receive on %v: %w", l.addr, err)
	}
	l.rmu.Lock()
	defer l.rmu.Unlock()
	l.readErr = err
	for _, list := range l.byAddr {
		for _, r := range list {
			select {
			case r.muxStop <- err:
			default:
			}
		}
	}
	clear(l.byAddr)
	l.nrecv = 0
}

// sweep ends the Receivers that have had no valid RTP for their inactivity timeout.
func (l *lane) sweep(now time.Time) {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	for _, list := range l.byAddr {
		for i := len(list) - 1; i >= 0; i-- {
			r := list[i]
			if t := r.cfg.InactivityTimeout; t > 0 && now.Sub(r.lastValid) >= t {
				l.stop(r, ErrInactive)
			}
		}
	}
}

// dispatch hands one datagram to the Receiver it belongs to (see Mux), or counts it as unmatched.
// Caller holds rmu. It allocates nothing.
func (l *lane) dispatch(b []byte, from netip.AddrPort, now time.Time) {
	list := l.byAddr[from]
	if len(list) == 0 {
		l.unmatched.Add(1)
		return
	}
	rtpLike := len(b) >= rtpHeaderSize && b[0]>>6 == 2 && (b[1] < 192 || b[1] > 223)
	if len(list) == 1 {
		r := list[0]
		if rtpLike {
			r.muxSSRC, r.muxLatched = binary.BigEndian.Uint32(b[8:12]), true
		}
		r.handlePacket(b, from, now)
		return
	}
	if !rtpLike {
		l.unmatched.Add(1) // not RTP, so no SSRC to tell whose it is
		return
	}
	ssrc := binary.BigEndian.Uint32(b[8:12])
	for _, r := range list {
		if (r.cfg.SSRC != 0 && r.cfg.SSRC == ssrc) || (r.cfg.SSRC == 0 && r.muxLatched && r.muxSSRC == ssrc) {
			r.handlePacket(b, from, now)
			return
		}
	}
	for _, r := range list {
		if r.cfg.SSRC == 0 && !r.muxLatched {
			r.muxSSRC, r.muxLatched = ssrc, true
			r.handlePacket(b, from, now)
			return
		}
	}
	l.unmatched.Add(1)
}
