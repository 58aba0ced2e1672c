package prompts_test

import (
	"fmt"
	"time"

	"github.com/voiceotp/voiceotp/prompts"
)

func ExampleGroupDigits() {
	for _, code := range []string{"4829", "48291", "482913", "4829137", "482913705", "4829137056"} {
		fmt.Println(prompts.GroupDigits(code, 0))
	}
	// Output:
	// [48 29]
	// [482 91]
	// [482 913]
	// [4829 137]
	// [482 913 705]
	// [4829 137 056]
}

// A code is spoken digit by digit: 250 ms between the digits of a group and
// 700 ms between groups, each pause rounded up to whole 20 ms frames.
func ExampleCatalog_Code() {
	c, err := prompts.Load("en")
	if err != nil {
		panic(err)
	}
	frames, err := c.Code(prompts.ULaw, "482913", prompts.CodeOptions{})
	if err != nil {
		panic(err)
	}
	// Print the pauses: runs of the shared silence frame.
	silence := c.SilenceFrame(prompts.ULaw)
	run := 0
	for _, f := range frames {
		if &f[0] == &silence[0] {
			run++
			continue
		}
		if run > 0 {
			fmt.Print(prompts.Duration(frames[:run]), " ")
			run = 0
		}
	}
	fmt.Println()
	// Output: 260ms 260ms 700ms 260ms 260ms
}

// Utterances are built from references to the pre-encoded frames; the frames
// are then sent one per 20 ms RTP packet.
func ExampleCatalog_Say() {
	c, err := prompts.Load("en")
	if err != nil {
		panic(err)
	}
	frames, err := c.Say(prompts.ALaw).
		Prompt(prompts.CodeIs).Pause(300*time.Millisecond).
		Code("482913", prompts.CodeOptions{}).Pause(time.Second).
		Prompt(prompts.Repeat).
		Frames()
	if err != nil {
		panic(err)
	}
	fmt.Println(len(frames[0]), "bytes per frame,", prompts.Duration(frames) > 5*time.Second)
	// Output: 160 bytes per frame, true
}
