package prompts

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrInvalidWAV is matched (with errors.Is) by every *WAVError.
var ErrInvalidWAV = errors.New("prompts: invalid WAV")

// A WAVError reports a prompt recording that LoadFS cannot use: not a RIFF/WAVE
// file, truncated, or not 8000 Hz mono 16-bit linear PCM.
type WAVError struct {
	Path   string // the file within the fs.FS given to LoadFS, e.g. "en/7.wav"
	Reason string // what is wrong, e.g. "sample rate 16000 Hz, want 8000 Hz"
}

// Error returns "prompts: <path>: invalid WAV: <reason>".
func (e *WAVError) Error() string {
	return "prompts: " + e.Path + ": invalid WAV: " + e.Reason
}

// Is reports whether target is ErrInvalidWAV.
func (e *WAVError) Is(target error) bool { return target == ErrInvalidWAV }

// The only format a prompt recording may have: what telephony plays, so that
// loading never resamples or mixes down.
const (
	wavRate     = 8000
	wavChannels = 1
	wavBits     = 16

	wavFormatPCM        = 0x0001
	wavFormatExtensible = 0xFFFE
)

// parseWAV returns the samples of a RIFF/WAVE file holding 8000 Hz, mono, 16-bit
// little-endian linear PCM. It reads only data, never panics on malformed input,
// and returns a reason (without the file name) when the file is unusable.
func parseWAV(b []byte) ([]int16, error) {
	data, err := WAVData(b, checkFmt)
	if err != nil {
		return nil, err
	}
	if len(data)%2 != 0 {
		return nil, fmt.Errorf("data size %d is not a whole number of 16-bit samples", len(data))
	}
	if len(data) == 0 {
		return nil, errors.New("no samples")
	}
	pcm := make([]int16, len(data)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(data[2*i:]))
	}
	return pcm, nil
}

// WAVData walks the chunks of a RIFF/WAVE file and returns the body of its "data"
// chunk. It hands the body of the "fmt " chunk, which must come before "data", to
// onFmt, which checks the format its caller can use; an error of onFmt is returned
// as it is. WAVData reads only b, never panics on malformed input, and its errors
// do not name the file. The prompts' own format is in the diagram (integers
// little-endian; chunks padded to an even length; chunks other than "fmt " and
// "data", such as "LIST", skipped):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                          "RIFF"                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 RIFF size (file length - 8)                   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                          "WAVE"                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                          "fmt "                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 fmt size (16, 18 or 40)                       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  format (1 = PCM, 0xFFFE)     |        channels (1)           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                     sample rate (8000)                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                     byte rate (16000)                         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|      block align (2)          |     bits per sample (16)      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        (WAVE_FORMAT_EXTENSIBLE only: cbSize, valid bits,      |
//	|         channel mask, sub-format GUID whose first 2 bytes = 1)|
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                          "data"                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 data size (2 x samples)                       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        sample 0 (int16)       |        sample 1 (int16)  ...  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
func WAVData(b []byte, onFmt func(body []byte) error) ([]byte, error) {
	le := binary.LittleEndian
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, errors.New("not a RIFF/WAVE file")
	}
	riffEnd := uint64(le.Uint32(b[4:8])) + 8
	if riffEnd < 12 {
		return nil, fmt.Errorf("RIFF size %d is too small", riffEnd-8)
	}
	if riffEnd > uint64(len(b)) {
		return nil, fmt.Errorf("truncated: the RIFF header says %d bytes, the file has %d", riffEnd, len(b))
	}
	b = b[12:riffEnd]

	var haveFmt bool
	for len(b) > 0 {
		if len(b) < 8 {
			return nil, errors.New("truncated chunk header")
		}
		id, size := string(b[0:4]), uint64(le.Uint32(b[4:8]))
		b = b[8:]
		if size > uint64(len(b)) {
			return nil, fmt.Errorf("truncated %q chunk: %d bytes declared, %d present", id, size, len(b))
		}
		body := b[:size]
		if size%2 == 1 && size < uint64(len(b)) {
			size++ // RIFF chunks are padded to an even length
		}
		b = b[size:]

		switch id {
		case "fmt ":
			if err := onFmt(body); err != nil {
				return nil, err
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return nil, errors.New(`"data" chunk before "fmt " chunk`)
			}
			return body, nil
		}
	}
	if !haveFmt {
		return nil, errors.New(`no "fmt " chunk`)
	}
	return nil, errors.New(`no "data" chunk`)
}

// checkFmt accepts only 8000 Hz, mono, 16-bit linear PCM.
func checkFmt(f []byte) error {
	le := binary.LittleEndian
	if len(f) < 16 {
		return fmt.Errorf(`"fmt " chunk too short: %d bytes`, len(f))
	}
	format := le.Uint16(f[0:2])
	channels := le.Uint16(f[2:4])
	rate := le.Uint32(f[4:8])
	byteRate := le.Uint32(f[8:12])
	blockAlign := le.Uint16(f[12:14])
	bits := le.Uint16(f[14:16])
	if format == wavFormatExtensible {
		// cbSize(2) validBits(2) channelMask(4) subFormat GUID(16): the GUID's
		// first two bytes are the real format code.
		if len(f) < 40 {
			return fmt.Errorf(`WAVE_FORMAT_EXTENSIBLE "fmt " chunk too short: %d bytes`, len(f))
		}
		format = le.Uint16(f[24:26])
	}
	switch {
	case format != wavFormatPCM:
		return fmt.Errorf("format code %#04x, want 1 (linear PCM)", format)
	case channels != wavChannels:
		return fmt.Errorf("%d channels, want 1 (mono)", channels)
	case rate != wavRate:
		return fmt.Errorf("sample rate %d Hz, want %d Hz", rate, wavRate)
	case bits != wavBits:
		return fmt.Errorf("%d bits per sample, want %d", bits, wavBits)
	case blockAlign != wavChannels*wavBits/8 || byteRate != wavRate*wavChannels*wavBits/8:
		return fmt.Errorf("inconsistent header: block align %d, byte rate %d", blockAlign, byteRate)
	}
	return nil
}
