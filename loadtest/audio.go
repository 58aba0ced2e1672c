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

// encodeFrames encodes pcm to G.711 frames of prompts.FrameSamples bytes, the last padded with
// silence. The frames are sub-slices of one backing array, each with its capacity capped at its
// length, so that an append by a careless holder cannot overwrite the next frame.
func encodeFrames(pcm []int16, enc prompts.Encoding) [][]byte {
	encode := g711.EncodeUlawFrame
	if enc == prompts.ALaw {
		encode = g711.EncodeAlawFrame
	}
	n := (len(pcm) + prompts.FrameSamples - 1) / prompts.FrameSamples
	buf := make([]byte, n*prompts.FrameSamples)
	for i := range buf {
		var s int16 // silence pads the last frame
		if i < len(pcm) {
			s = pcm[i]
		}
		buf[i] = encode(s)
	}
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = buf[i*prompts.FrameSamples : (i+1)*prompts.FrameSamples : (i+1)*prompts.FrameSamples]
	}
	return frames
}
