package loadtest_test

import (
	"fmt"
	"time"

	"github.com/zaf/g711"

	"github.com/voiceotp/voiceotp/loadtest"
	"github.com/voiceotp/voiceotp/prompts"
)

// The recogniser hears the challenge and a code in what the server says, from decoded audio.
func ExampleRecogniser() {
	cat, err := prompts.Load("en")
	if err != nil {
		fmt.Println(err)
		return
	}
	rec, err := loadtest.NewRecogniser(cat)
	if err != nil {
		fmt.Println(err)
		return
	}
	frames, err := cat.Say(prompts.ALaw).
		Prompt(prompts.Press).Pause(prompts.ChallengePause).Digit('7').Pause(time.Second).
		Prompt(prompts.CodeIs).Pause(400*time.Millisecond).Code("482913", prompts.CodeOptions{}).
		Pause(300 * time.Millisecond).Prompt(prompts.Goodbye).Frames()
	if err != nil {
		fmt.Println(err)
		return
	}
	var pcm []int16
	for _, f := range frames {
		for _, b := range f {
			pcm = append(pcm, g711.DecodeAlawFrame(b))
		}
	}
	heard := loadtest.Parse(rec.Recognise(pcm), true)
	code, err := heard.Code()
	fmt.Printf("press %c, code %s, %v\n", heard.Challenge, code, err)
	// Output:
	// press 7, code 482913, <nil>
}
