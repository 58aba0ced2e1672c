package loadtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// wavHeaderSize is the size of the canonical RIFF/WAVE header WriteWAV writes.
const wavHeaderSize = 44

// maxWAVSamples keeps the RIFF sizes within 32 bits.
const maxWAVSamples = (1<<32 - 1 - wavHeaderSize) / 2

// WriteWAV writes pcm as a WAV file: RIFF/WAVE, linear PCM, 16-bit little-endian, mono, 8000 Hz, the
// format prompts.LoadFS reads. It is how `ivr demo` saves what the phone heard (CallReport.PCM).
func WriteWAV(w io.Writer, pcm []int16) error {
	if len(pcm) > maxWAVSamples {
		return errors.New("loadtest: recording too long for a WAV file")
	}
	data := uint32(2 * len(pcm))
	var h [wavHeaderSize]byte
	copy(h[0:], "RIFF")
	binary.LittleEndian.PutUint32(h[4:], 36+data)
	copy(h[8:], "WAVE")
	copy(h[12:], "fmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)   // fmt chunk size
	binary.LittleEndian.PutUint16(h[20:], 1)    // PCM
	binary.LittleEndian.PutUint16(h[22:], 1)    // mono
	binary.LittleEndian.PutUint32(h[24:], 8000) // sample rate
	binary.LittleEndian.PutUint32(h[28:], 16000)
	binary.LittleEndian.PutUint16(h[32:], 2)  // block align
	binary.LittleEndian.PutUint16(h[34:], 16) // bits per sample
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], data)
	if _, err := w.Write(h[:]); err != nil {
		return fmt.Errorf("loadtest: write wav: %w", err)
	}
	buf := make([]byte, 0, 4096)
	for len(pcm) > 0 {
		n := min(len(pcm), cap(buf)/2)
		buf = buf[:0]
		for _, s := range pcm[:n] {
			buf = binary.LittleEndian.AppendUint16(buf, uint16(s))
		}
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("loadtest: write wav: %w", err)
		}
		pcm = pcm[n:]
	}
	return nil
}
