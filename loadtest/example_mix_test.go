package loadtest_test

import (
	"fmt"

	"github.com/voiceotp/voiceotp/loadtest"
)

// A load test's mix shares its calls between behaviours; each call's number
// tells the phone which behaviour it plays, and the driver knows the outcome
// the server should report for it.
func ExampleParseMix() {
	mix, err := loadtest.ParseMix("answer=85,nokey=5,busy=4,noanswer=3,hangup=3")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(mix, mix.Weight(loadtest.Busy))
	n := loadtest.Number(loadtest.Busy, 42, 7)
	b, _ := loadtest.BehaviourOf(n)
	fmt.Println(n, b, loadtest.Expected(b))
	// Output:
	// answer=85,nokey=5,busy=4,noanswer=3,hangup=3 4
	// +15552042000007 busy busy
}

func ExampleParseDelay() {
	d, err := loadtest.ParseDelay("200ms-2s")
	fmt.Println(d.Min, d.Max, err)
	// Output: 200ms 2s <nil>
}
