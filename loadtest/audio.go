package loadtest

import (
	"github.com/zaf/g711"

	"github.com/voiceotp/voiceotp/prompts"
)

// decodeSample decodes one G.711 byte to linear PCM.
func decodeSample(enc prompts.Encoding, b byte) int16 {
	if enc == prompts.ALaw {
		return g711.DecodeAlawFrame(b)
	}
	return g711.DecodeUlawFrame(b)
}
