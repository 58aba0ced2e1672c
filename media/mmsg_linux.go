//go:build linux && (amd64 || arm64 || riscv64 || ppc64le || loong64)

package media

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// errReadTimeout is what batchReader.read returns when the read deadline passed with nothing to read.
var errReadTimeout = os.ErrDeadlineExceeded

// mmsghdr is struct mmsghdr of recvmmsg(2) on 64-bit Linux: a msghdr and the length received, padded
// to 8 bytes.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// sockaddrSize holds a struct sockaddr_in6, the larger of the two families.
const sockaddrSize = unix.SizeofSockaddrInet6

// oobSize holds one SCM_TIMESTAMPNS control message: a cmsghdr and a struct timespec.
const oobSize = 64

// batchReader reads datagrams in batches with recvmmsg(2), into buffers it owns, allocating nothing per
// call: the syscall closure is made once, and addresses are parsed from the raw sockaddr into
// netip.AddrPort values. The socket has SO_TIMESTAMPNS on, so each datagram comes with the time the
// kernel received it: a batch read late (the lane's goroutine waited for a core) still stamps each
// packet with its own arrival, which is what RTP jitter is about. (Linux enables receive timestamps
// system-wide with deferred work when the first socket asks; datagrams received before that are stamped
// when they are read.)
type batchReader struct {
	rc    syscall.RawConn
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	bufs  [][recvBufSize]byte
	names [][sockaddrSize]byte
	oobs  [][oobSize]byte
	fn    func(fd uintptr) bool
	n     int
	errno syscall.Errno
	now   time.Time // when the last read returned
}

func newBatchReader(conn *net.UDPConn, batch int) *batchReader {
	br := &batchReader{
		hdrs:  make([]mmsghdr, batch),
		iovs:  make([]unix.Iovec, batch),
		bufs:  make([][recvBufSize]byte, batch),
		names: make([][sockaddrSize]byte, batch),
		oobs:  make([][oobSize]byte, batch),
	}
	br.rc, _ = conn.SyscallConn() // a *net.UDPConn always has one
	_ = br.rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) // else: the read's time
	})
	for i := range br.hdrs {
		br.iovs[i].Base = &br.bufs[i][0]
		br.iovs[i].SetLen(recvBufSize)
		br.hdrs[i].hdr.Name = &br.names[i][0]
		br.hdrs[i].hdr.Iov = &br.iovs[i]
		br.hdrs[i].hdr.SetIovlen(1)
		br.hdrs[i].hdr.Control = &br.oobs[i][0]
	}
	br.fn = br.recv
	return br
}

// read waits for at least one datagram (until the connection's read deadline, then errReadTimeout)
// and returns how many it read.
func (br *batchReader) read() (int, error) {
	for i := range br.hdrs {
		br.hdrs[i].hdr.Namelen = sockaddrSize
		br.hdrs[i].hdr.SetControllen(oobSize)
		br.hdrs[i].hdr.Flags = 0
		br.hdrs[i].n = 0
	}
	br.n, br.errno = 0, 0
	err := br.rc.Read(br.fn)
	br.now = time.Now()
	if err != nil {
		return 0, err
	}
	if br.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", br.errno)
	}
	return br.n, nil
}

// recv is the RawConn.Read callback: false asks the poller to wait for the socket to be readable.
func (br *batchReader) recv(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&br.hdrs[0])),
			uintptr(len(br.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			br.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		br.errno = e
		return true
	}
}

// packet returns datagram i of the last read, where it came from (an IPv4-mapped address unmapped)
// and when it arrived: the kernel's timestamp, carried over to the monotonic clock of the read's
// time, or the read's time when there is none. The bytes are valid until the next read.
func (br *batchReader) packet(i int) ([]byte, netip.AddrPort, time.Time) {
	h := &br.hdrs[i]
	b := br.bufs[i][:min(int(h.n), recvBufSize)]
	name := br.names[i][:min(int(h.hdr.Namelen), sockaddrSize)]
	at := br.now
	if ts, ok := rxTimestamp(br.oobs[i][:min(int(h.hdr.Controllen), oobSize)]); ok {
		// The kernel's clock is the wall clock; the offset from the read is carried over to the read's
		// monotonic reading, so that a wall-clock step cannot fake inactivity or jitter.
		if d := ts.Sub(br.now.Round(0)); d <= 0 && d > -time.Second {
			at = br.now.Add(d)
		}
	}
	return b, parseSockaddr(name), at
}

// rxTimestamp finds the SCM_TIMESTAMPNS message in a control buffer (cmsg(3): a cmsghdr of 16 bytes
// on 64-bit Linux, then a struct timespec). It allocates nothing, unlike unix.ParseSocketControlMessage.
func rxTimestamp(oob []byte) (time.Time, bool) {
	const hdrLen = unix.SizeofCmsghdr
	for len(oob) >= hdrLen {
		n := int(binary.NativeEndian.Uint64(oob[0:8]))
		level := int32(binary.NativeEndian.Uint32(oob[8:12]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:16]))
		if n < hdrLen || n > len(oob) {
			return time.Time{}, false
		}
		if level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS && n >= hdrLen+16 {
			sec := int64(binary.NativeEndian.Uint64(oob[hdrLen : hdrLen+8]))
			nsec := int64(binary.NativeEndian.Uint64(oob[hdrLen+8 : hdrLen+16]))
			return time.Unix(sec, nsec), true
		}
		oob = oob[min(len(oob), (n+7)&^7):]
	}
	return time.Time{}, false
}

// parseSockaddr reads a struct sockaddr_in or sockaddr_in6; anything else is the zero AddrPort, which
// no Receiver expects.
func parseSockaddr(b []byte) netip.AddrPort {
	if len(b) < 2 {
		return netip.AddrPort{}
	}
	port := func() uint16 { return binary.BigEndian.Uint16(b[2:4]) }
	switch binary.NativeEndian.Uint16(b[:2]) {
	case unix.AF_INET:
		if len(b) >= unix.SizeofSockaddrInet4 {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port())
		}
	case unix.AF_INET6:
		if len(b) >= unix.SizeofSockaddrInet6 {
			return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), port())
		}
	}
	return netip.AddrPort{}
}

// forceSocketBuffers asks for size bytes of receive and send buffer beyond the sysctl limits, which
// works with CAP_NET_ADMIN and is refused otherwise, and returns the receive buffer the kernel granted.
func forceSocketBuffers(conn *net.UDPConn, size int) int {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0
	}
	granted := 0
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
		granted, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	})
	return granted
}
