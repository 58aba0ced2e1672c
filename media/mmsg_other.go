//go:build !(linux && (amd64 || arm64 || riscv64 || ppc64le || loong64))

package media

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"time"
)

// errReadTimeout is what batchReader.read returns when the read deadline passed with nothing to read.
var errReadTimeout = os.ErrDeadlineExceeded

// batchReader reads one datagram per call where this package has no recvmmsg.
type batchReader struct {
	conn *net.UDPConn
	buf  [recvBufSize]byte
	n    int
	from netip.AddrPort
	now  time.Time
}

func newBatchReader(conn *net.UDPConn, _ int) *batchReader { return &batchReader{conn: conn} }

func (br *batchReader) read() (int, error) {
	n, from, err := br.conn.ReadFromUDPAddrPort(br.buf[:])
	br.now = time.Now()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, errReadTimeout
		}
		return 0, err
	}
	br.n, br.from = n, netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	return 1, nil
}

func (br *batchReader) packet(int) ([]byte, netip.AddrPort, time.Time) {
	return br.buf[:br.n], br.from, br.now
}

func forceSocketBuffers(*net.UDPConn, int) int { return 0 }
