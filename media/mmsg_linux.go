//go:build linux && (amd64 || arm64 || riscv64 || ppc64le || loong64)

package media

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"syscall"
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

// batchReader reads datagrams in batches with recvmmsg(2), into buffers it owns, allocating nothing per
// call: the syscall closure is made once, and addresses are parsed from the raw sockaddr into
// netip.AddrPort values.
type batchReader struct {
	rc    syscall.RawConn
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	bufs  [][recvBufSize]byte
	names [][sockaddrSize]byte
	fn    func(fd uintptr) bool
	n     int
	errno syscall.Errno
}

func newBatchReader(conn *net.UDPConn, batch int) *batchReader {
	br := &batchReader{
		hdrs:  make([]mmsghdr, batch),
		iovs:  make([]unix.Iovec, batch),
		bufs:  make([][recvBufSize]byte, batch),
		names: make([][sockaddrSize]byte, batch),
	}
	br.rc, _ = conn.SyscallConn() // a *net.UDPConn always has one
	for i := range br.hdrs {
		br.iovs[i].Base = &br.bufs[i][0]
		br.iovs[i].SetLen(recvBufSize)
		br.hdrs[i].hdr.Name = &br.names[i][0]
		br.hdrs[i].hdr.Iov = &br.iovs[i]
		br.hdrs[i].hdr.SetIovlen(1)
	}
	br.fn = br.recv
	return br
}

// read waits for at least one datagram (until the connection's read deadline, then errReadTimeout)
// and returns how many it read.
func (br *batchReader) read() (int, error) {
	for i := range br.hdrs {
		br.hdrs[i].hdr.Namelen = sockaddrSize
		br.hdrs[i].hdr.Flags = 0
		br.hdrs[i].n = 0
	}
	br.n, br.errno = 0, 0
	if err := br.rc.Read(br.fn); err != nil {
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

// packet returns datagram i of the last read and where it came from (an IPv4-mapped address unmapped).
// The bytes are valid until the next read.
func (br *batchReader) packet(i int) ([]byte, netip.AddrPort) {
	b := br.bufs[i][:min(int(br.hdrs[i].n), recvBufSize)]
	name := br.names[i][:min(int(br.hdrs[i].hdr.Namelen), sockaddrSize)]
	return b, parseSockaddr(name)
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
