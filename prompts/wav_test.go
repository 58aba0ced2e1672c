package prompts

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
)

// wavSpec describes a WAV file for makeWAV; the zero value of each field means
// the valid default (PCM, mono, 8000 Hz, 16-bit).
type wavSpec struct {
	format     uint16
	channels   uint16
	rate       uint32
	bits       uint16
	extensible bool     // write WAVE_FORMAT_EXTENSIBLE with sub-format format
	preChunks  [][]byte // whole chunks written before "fmt "
	dataFirst  bool     // write "data" before "fmt "
	noData     bool
	data       []byte // raw data chunk body; nil means samples
	samples    []int16
}

func chunk(id string, body []byte) []byte {
	b := append([]byte(id), binary.LittleEndian.AppendUint32(nil, uint32(len(body)))...)
	b = append(b, body...)
	if len(body)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

func makeWAV(s wavSpec) []byte {
	le := binary.LittleEndian
	def := func(v, d uint32) uint32 {
		if v == 0 {
			return d
		}
		return v
	}
	format := uint16(def(uint32(s.format), 1))
	channels := uint16(def(uint32(s.channels), 1))
	rate := def(s.rate, 8000)
	bits := uint16(def(uint32(s.bits), 16))
	block := channels * bits / 8

	var f []byte
	code := format
	if s.extensible {
		code = 0xFFFE
	}
	f = le.AppendUint16(f, code)
	f = le.AppendUint16(f, channels)
	f = le.AppendUint32(f, rate)
	f = le.AppendUint32(f, rate*uint32(block))
	f = le.AppendUint16(f, block)
	f = le.AppendUint16(f, bits)
	if s.extensible {
		f = le.AppendUint16(f, 22)
		f = le.AppendUint16(f, bits)
		f = le.AppendUint32(f, 4)
		f = le.AppendUint16(f, format)
		f = append(f, "\x00\x00\x00\x00\x10\x00\x80\x00\x00\xAA\x00\x38\x9B\x71"...)
	}
	data := s.data
	if data == nil {
		for _, v := range s.samples {
			data = le.AppendUint16(data, uint16(v))
		}
	}
	var body []byte
	body = append(body, "WAVE"...)
	for _, c := range s.preChunks {
		body = append(body, c...)
	}
	if s.dataFirst {
		body = append(body, chunk("data", data)...)
	}
	body = append(body, chunk("fmt ", f)...)
	if !s.dataFirst && !s.noData {
		body = append(body, chunk("data", data)...)
	}
	return chunk("RIFF", body)
}

func TestParseWAVValid(t *testing.T) {
	samples := []int16{0, 1, -1, 32767, -32768, 1234}
	tests := []struct {
		name string
		spec wavSpec
	}{
		{"plain PCM", wavSpec{samples: samples}},
		{"extensible PCM", wavSpec{extensible: true, samples: samples}},
		{"LIST chunk before fmt", wavSpec{preChunks: [][]byte{chunk("LIST", []byte("INFOISFT\x04\x00\x00\x00sox\x00"))}, samples: samples}},
		{"odd-sized chunk is padded", wavSpec{preChunks: [][]byte{chunk("junk", []byte{1, 2, 3})}, samples: samples}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWAV(makeWAV(tt.spec))
			if err != nil {
				t.Fatalf("parseWAV: %v", err)
			}
			if !slices.Equal(got, samples) {
				t.Errorf("samples = %v, want %v", got, samples)
			}
		})
	}
}

func TestParseWAVInvalid(t *testing.T) {
	good := makeWAV(wavSpec{samples: []int16{1, 2, 3, 4}})
	riffTooLong := slices.Clone(good)
	binary.LittleEndian.PutUint32(riffTooLong[4:], uint32(len(good)))
	tests := []struct {
		name string
		wav  []byte
		want string // substring of the reason
	}{
		{"empty", nil, "not a RIFF/WAVE"},
		{"garbage", []byte("this is not a wav file at all, sorry"), "not a RIFF/WAVE"},
		{"RIFF but not WAVE", append([]byte("RIFF\x04\x00\x00\x00AVI "), good[12:]...), "not a RIFF/WAVE"},
		{"16 kHz", makeWAV(wavSpec{rate: 16000, samples: []int16{1}}), "sample rate 16000 Hz, want 8000 Hz"},
		{"44.1 kHz", makeWAV(wavSpec{rate: 44100, samples: []int16{1}}), "sample rate 44100 Hz"},
		{"stereo", makeWAV(wavSpec{channels: 2, samples: []int16{1, 2}}), "2 channels, want 1"},
		{"8-bit", makeWAV(wavSpec{bits: 8, data: []byte{1, 2}}), "8 bits per sample, want 16"},
		{"24-bit", makeWAV(wavSpec{bits: 24, data: []byte{1, 2, 3}}), "24 bits per sample"},
		{"A-law file", makeWAV(wavSpec{format: 6, bits: 8, data: []byte{0xD5}}), "format code 0x0006"},
		{"float", makeWAV(wavSpec{format: 3, bits: 32, data: make([]byte, 4)}), "format code 0x0003"},
		{"extensible float", makeWAV(wavSpec{extensible: true, format: 3, samples: []int16{1}}), "format code 0x0003"},
		{"truncated data", good[:len(good)-3], "truncated"},
		{"truncated header", good[:20], "truncated"},
		{"RIFF size too long", riffTooLong, "truncated"},
		{"RIFF size too small", []byte("RIFF\x01\x00\x00\x00WAVE"), "RIFF size 1 is too small"},
		{"short fmt", chunk("RIFF", append([]byte("WAVE"), chunk("fmt ", []byte{1, 0, 1, 0})...)), `"fmt " chunk too short`},
		{"data before fmt", makeWAV(wavSpec{dataFirst: true, samples: []int16{1}}), `"data" chunk before "fmt "`},
		{"no fmt", chunk("RIFF", []byte("WAVE")), `no "fmt "`},
		{"no data", makeWAV(wavSpec{noData: true}), `no "data"`},
		{"no samples", makeWAV(wavSpec{samples: []int16{}}), "no samples"},
		{"odd data size", makeWAV(wavSpec{data: []byte{1, 2, 3}}), "not a whole number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pcm, err := parseWAV(tt.wav)
			if err == nil {
				t.Fatalf("parseWAV = %d samples, want error containing %q", len(pcm), tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestWAVErrorIs(t *testing.T) {
	var err error = &WAVError{Path: "en/7.wav", Reason: "2 channels, want 1 (mono)"}
	if !errors.Is(err, ErrInvalidWAV) {
		t.Error("errors.Is(WAVError, ErrInvalidWAV) = false")
	}
	if got, want := err.Error(), "prompts: en/7.wav: invalid WAV: 2 channels, want 1 (mono)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// FuzzLoadWAV checks that parseWAV never panics and that whatever it accepts
// is a non-empty slice of samples that the data could hold.
func FuzzLoadWAV(f *testing.F) {
	f.Add(makeWAV(wavSpec{samples: []int16{1, 2, 3}}))
	f.Add(makeWAV(wavSpec{extensible: true, samples: []int16{-1}}))
	f.Add(makeWAV(wavSpec{preChunks: [][]byte{chunk("LIST", []byte("abc"))}, samples: []int16{7}}))
	f.Add(makeWAV(wavSpec{rate: 16000, channels: 2, samples: []int16{1, 2}}))
	f.Add([]byte("RIFF\xff\xff\xff\xffWAVEfmt "))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		pcm, err := parseWAV(b)
		if err != nil {
			if pcm != nil {
				t.Errorf("error %v with %d samples", err, len(pcm))
			}
			return
		}
		if len(pcm) == 0 || 2*len(pcm) > len(b) {
			t.Errorf("accepted %d samples from %d bytes", len(pcm), len(b))
		}
	})
}
