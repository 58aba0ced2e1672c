package callflow

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/internal/sipptest"
)

// This file holds the test peers: a SIPp process driven by a committed
// scenario, an RTP endpoint that records what a phone hears and can press a
// key, and a writer of RFC 4733 pcap files for SIPp's play_pcap_audio.

// sippPeer is one SIPp UAS process handling exactly one call.
type sippPeer struct {
	*sipptest.Peer
	t *testing.T
}

// startSIPp runs `sipp -sf testdata/<scenario>` as a UAS on 127.0.0.1 and
// waits until it listens. keys become -key name value (SIPp [name] keywords).
// dtmf, if not nil, is written as dtmf.pcap in SIPp's working directory.
func startSIPp(t *testing.T, scenario string, dtmf []byte, keys map[string]string) *sippPeer {
	t.Helper()
	o := sipptest.Options{Scenario: filepath.Join("testdata", scenario), Keys: keys}
	if dtmf != nil {
		o.Files = map[string][]byte{"dtmf.pcap": dtmf}
	}
	return &sippPeer{Peer: sipptest.Start(t, o), t: t}
}

// wait fails the test unless SIPp's scenario passed.
func (p *sippPeer) wait(t *testing.T) {
	t.Helper()
	p.Wait(t)
}

// dtmfPCAP returns a pcap (Ethernet/IPv4/UDP/RTP) holding one RFC 4733
// key press of digit on payload type pt: five updates 20 ms apart (the
// first with the marker bit), then the end packet sent three times
// (RFC 4733 §2.5.1.4). SIPp's play_pcap_audio rewrites the addresses.
func dtmfPCAP(digit byte, pt uint8) []byte {
	event := map[byte]byte{'*': 10, '#': 11}[digit]
	if digit >= '0' && digit <= '9' {
		event = digit - '0'
	}
	var out bytes.Buffer
	le := binary.LittleEndian
	hdr := make([]byte, 24)
	le.PutUint32(hdr[0:], 0xa1b2c3d4)
	le.PutUint16(hdr[4:], 2)
	le.PutUint16(hdr[6:], 4)
	le.PutUint32(hdr[16:], 65535)
	le.PutUint32(hdr[20:], 1) // Ethernet
	out.Write(hdr)
	const ts = 0x1234560
	seq := uint16(1000)
	at := time.Duration(0)
	write := func(marker, end bool, dur uint16) {
		rtp := make([]byte, 16)
		rtp[0] = 0x80
		rtp[1] = pt
		if marker {
			rtp[1] |= 0x80
		}
		binary.BigEndian.PutUint16(rtp[2:], seq)
		binary.BigEndian.PutUint32(rtp[4:], ts)
		binary.BigEndian.PutUint32(rtp[8:], 0x5eed5eed)
		rtp[12] = event
		rtp[13] = 10 // volume -10 dBm0
		if end {
			rtp[13] |= 0x80
		}
		binary.BigEndian.PutUint16(rtp[14:], dur)
		seq++
		frame := make([]byte, 14+20+8+len(rtp))
		binary.BigEndian.PutUint16(frame[12:], 0x0800)
		ip := frame[14:34]
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(rtp)))
		ip[8] = 64
		ip[9] = 17
		copy(ip[12:], []byte{127, 0, 0, 1})
		copy(ip[16:], []byte{127, 0, 0, 1})
		var sum uint32
		for i := 0; i < 20; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(ip[i:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
		udp := frame[34:42]
		binary.BigEndian.PutUint16(udp[0:], 6000)
		binary.BigEndian.PutUint16(udp[2:], 6002)
		binary.BigEndian.PutUint16(udp[4:], uint16(8+len(rtp)))
		copy(frame[42:], rtp)
		rec := make([]byte, 16)
		le.PutUint32(rec[0:], uint32(1700000000+at/time.Second))
		le.PutUint32(rec[4:], uint32((at%time.Second)/time.Microsecond))
		le.PutUint32(rec[8:], uint32(len(frame)))
		le.PutUint32(rec[12:], uint32(len(frame)))
		out.Write(rec)
		out.Write(frame)
	}
	for i := 1; i <= 5; i++ {
		write(i == 1, false, uint16(160*i))
		at += 20 * time.Millisecond
	}
	for i := 0; i < 3; i++ {
		write(false, true, 960)
		at += 5 * time.Millisecond
	}
	return out.Bytes()
}

// heard is one RTP packet received by the phone endpoint.
type heard struct {
	at      time.Time
	pt      uint8
	marker  bool
	payload []byte
}

// phoneMedia is the RTP side of a test phone: it records every packet it
// receives and lets the test decide, packet by packet, when to press a key.
// Key presses go to the sender's address from the phone's own socket, as a
// phone would send them (RFC 4733).
type phoneMedia struct {
	conn *net.UDPConn
	pt   uint8
	// react is called for the n-th received packet (from 1) with its
	// payload; returning a digit presses it.
	react func(n int, payload []byte) (digit byte, press bool)

	mu      sync.Mutex // guards packets, pressed and first
	packets []heard
	pressed time.Time
	first   func(from netip.AddrPort)
	seq     uint16
	ts      uint32
}

// pressOnPacket presses digit when the n-th packet arrives (never if n is 0).
func pressOnPacket(n int, digit byte) func(int, []byte) (byte, bool) {
	return func(i int, _ []byte) (byte, bool) { return digit, n > 0 && i == n }
}

func newPhoneMedia(t *testing.T, pt uint8, react func(int, []byte) (byte, bool)) *phoneMedia {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &phoneMedia{conn: c, pt: pt, react: react, seq: 7000, ts: 4242}
	done := make(chan struct{})
	go p.run(done)
	t.Cleanup(func() { c.Close(); <-done })
	return p
}

func (p *phoneMedia) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

func (p *phoneMedia) run(done chan struct{}) {
	defer close(done)
	buf := make([]byte, 1500)
	n := 0
	for {
		sz, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if sz < 12 {
			continue
		}
		n++
		payload := bytes.Clone(buf[12:sz])
		p.mu.Lock()
		p.packets = append(p.packets, heard{at: time.Now(), pt: buf[1] & 0x7f, marker: buf[1]&0x80 != 0, payload: payload})
		first := p.first
		if n == 1 {
			p.first = nil
		} else {
			first = nil
		}
		p.mu.Unlock()
		if first != nil {
			go first(from)
		}
		if p.react == nil {
			continue
		}
		if d, ok := p.react(n, payload); ok {
			go p.press(from, d)
		}
	}
}

// press sends one key press: three updates and three end packets.
func (p *phoneMedia) press(to netip.AddrPort, digit byte) {
	p.mu.Lock()
	p.pressed = time.Now()
	p.ts += 8000
	ts := p.ts
	seq := p.seq
	p.seq += 6
	p.mu.Unlock()
	for i := 1; i <= 6; i++ {
		pkt := make([]byte, 16)
		pkt[0] = 0x80
		pkt[1] = p.pt
		if i == 1 {
			pkt[1] |= 0x80
		}
		binary.BigEndian.PutUint16(pkt[2:], seq)
		binary.BigEndian.PutUint32(pkt[4:], ts)
		binary.BigEndian.PutUint32(pkt[8:], 0xabcdef)
		pkt[12] = digit - '0'
		pkt[13] = 10
		dur := uint16(160 * i)
		if i > 3 {
			pkt[13] |= 0x80
			dur = 480
		}
		binary.BigEndian.PutUint16(pkt[14:], dur)
		seq++
		if _, err := p.conn.WriteToUDPAddrPort(pkt, to); err != nil && !errors.Is(err, net.ErrClosed) {
			return
		}
		// Not a wait for anything: a phone sends the packets of a key
		// press spread over time, and so does this one.
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *phoneMedia) snapshot() ([]heard, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]heard(nil), p.packets...), p.pressed
}

// stream sends frames (160-byte G.711, payload type pt) to to, paced at
// 20 ms, as a phone's own audio.
func (p *phoneMedia) stream(to netip.AddrPort, pt uint8, frames [][]byte) {
	seq, ts := uint16(100), uint32(80000)
	next := time.Now()
	for _, f := range frames {
		pkt := make([]byte, 12+len(f))
		pkt[0] = 0x80
		pkt[1] = pt
		binary.BigEndian.PutUint16(pkt[2:], seq)
		binary.BigEndian.PutUint32(pkt[4:], ts)
		binary.BigEndian.PutUint32(pkt[8:], 0x0a0b0c0d)
		copy(pkt[12:], f)
		if _, err := p.conn.WriteToUDPAddrPort(pkt, to); err != nil {
			return
		}
		seq++
		ts += 160
		next = next.Add(20 * time.Millisecond)
		// Not a wait for anything: the 20 ms pacing of a phone's audio,
		// on absolute deadlines.
		time.Sleep(time.Until(next))
	}
}

// onFirstPacket runs f once, with the sender's address, when the first
// packet arrives.
func (p *phoneMedia) onFirstPacket(f func(from netip.AddrPort)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.first = f
}
