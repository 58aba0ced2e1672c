package loadtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/voiceotp/voiceotp/prompts"
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

// WAV format codes (the "fmt " chunk's first field) that readWAV knows by name.
const (
	wavPCM        = 0x0001 // linear PCM
	wavFloat      = 0x0003 // IEEE float
	wavALaw       = 0x0006 // ITU-T G.711 A-law
	wavULaw       = 0x0007 // ITU-T G.711 µ-law
	wavExtensible = 0xFFFE // WAVE_FORMAT_EXTENSIBLE: the real code is in the sub-format GUID
)

// wavFormat is what a WAV file's "fmt " chunk says.
type wavFormat struct {
	code     uint16
	channels uint16
	rate     uint32
	bits     uint16
}

// String describes the format for an error: "16000 Hz, 2 channels, 16-bit linear PCM".
func (f wavFormat) String() string {
	var enc string
	switch f.code {
	case wavPCM:
		enc = "linear PCM"
	case wavFloat:
		enc = "float"
	case wavALaw:
		enc = "A-law"
	case wavULaw:
		enc = "µ-law"
	default:
		enc = fmt.Sprintf("format %#04x", f.code)
	}
	ch := fmt.Sprintf("%d channels", f.channels)
	if f.channels == 1 {
		ch = "mono"
	}
	return fmt.Sprintf("%d Hz, %s, %d-bit %s", f.rate, ch, f.bits, enc)
}

// wavWanted is what readWAV accepts, for its errors.
const wavWanted = "8000 Hz mono: 16-bit linear PCM, or 8-bit µ-law or A-law"

// usable reports whether readWAV can decode the format without resampling or mixing down.
func (f wavFormat) usable() bool {
	if f.rate != 8000 || f.channels != 1 {
		return false
	}
	switch f.code {
	case wavPCM:
		return f.bits == 16
	case wavULaw, wavALaw:
		return f.bits == 8
	}
	return false
}

// readWAV returns the samples of a RIFF/WAVE file of 8000 Hz mono audio as linear PCM. It accepts
// what telephony records: 16-bit little-endian linear PCM (what WriteWAV writes and prompts.LoadFS
// reads), and 8-bit G.711 µ-law or A-law, which it decodes. Any other format (another rate, stereo,
// 8- or 24-bit PCM, float) is refused with an error naming the format found and the one wanted: the
// load tester does not resample or mix down (sox in.wav -r 8000 -c 1 -b 16 out.wav does). The chunks
// are walked by prompts.WAVData; the "fmt " fields read here are the format code (1, 6, 7, or
// 0xFFFE with the code in the first two bytes of the sub-format GUID at offset 24), the channels, the
// sample rate and the bits per sample. It reads only b, never panics on malformed input, and its
// errors do not name the file.
func readWAV(b []byte) ([]int16, error) {
	if len(b) == 0 {
		return nil, errors.New("empty file")
	}
	var f wavFormat
	data, err := prompts.WAVData(b, func(body []byte) error {
		le := binary.LittleEndian
		if len(body) < 16 {
			return fmt.Errorf(`"fmt " chunk too short: %d bytes`, len(body))
		}
		f = wavFormat{code: le.Uint16(body[0:2]), channels: le.Uint16(body[2:4]), rate: le.Uint32(body[4:8]), bits: le.Uint16(body[14:16])}
		if f.code == wavExtensible {
			if len(body) < 40 {
				return fmt.Errorf(`WAVE_FORMAT_EXTENSIBLE "fmt " chunk too short: %d bytes`, len(body))
			}
			f.code = le.Uint16(body[24:26])
		}
		if !f.usable() {
			return fmt.Errorf("format is %s; want %s", f, wavWanted)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return decodeWAVData(f, data)
}

// decodeWAVData turns the "data" chunk of a usable format into linear PCM.
func decodeWAVData(f wavFormat, data []byte) ([]int16, error) {
	if len(data) == 0 {
		return nil, errors.New("no samples")
	}
	if f.code != wavPCM {
		enc := prompts.ULaw
		if f.code == wavALaw {
			enc = prompts.ALaw
		}
		pcm := make([]int16, len(data))
		for i, c := range data {
			pcm[i] = decodeSample(enc, c)
		}
		return pcm, nil
	}
	if len(data)%2 != 0 {
		return nil, fmt.Errorf("data size %d is not a whole number of 16-bit samples", len(data))
	}
	pcm := make([]int16, len(data)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(data[2*i:]))
	}
	return pcm, nil
}
