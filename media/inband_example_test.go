package media_test

import (
	"fmt"
	"math"

	"github.com/voiceotp/voiceotp/media"
)

func ExampleToneDetector() {
	// 100 ms of the key 5 (770 Hz and 1336 Hz, about -20 dBm0 each), then 100 ms of silence, in the
	// 20 ms frames an RTP stream delivers.
	d := media.NewToneDetector()
	frame := make([]int16, 160)
	var keys []byte
	for n := range 10 {
		for i := range frame {
			t := float64(n*len(frame)+i) / 8000
			frame[i] = 0
			if n < 5 {
				frame[i] = int16(2270*math.Sin(2*math.Pi*770*t) + 2270*math.Sin(2*math.Pi*1336*t))
			}
		}
		keys = append(keys, d.Write(frame)...) // Write reuses its result: copy it out
	}
	fmt.Printf("%s\n", keys)
	// Output: 5
}
