package loadtest

import (
	"bytes"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/voiceotp/voiceotp/prompts"
)

// A recording written by WriteWAV loads back as a prompt, sample for sample.
func TestWriteWAVLoads(t *testing.T) {
	c := catalog(t)
	fs := fstest.MapFS{}
	for _, id := range prompts.RequiredIDs() {
		var b bytes.Buffer
		if err := WriteWAV(&b, c.PCM(id)); err != nil {
			t.Fatal(err)
		}
		fs["xx/"+string(id)+".wav"] = &fstest.MapFile{Data: b.Bytes()}
	}
	got, err := prompts.LoadFS(fs, "xx")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range prompts.RequiredIDs() {
		if !slices.Equal(got.PCM(id), c.PCM(id)) {
			t.Errorf("%s differs after a round trip", id)
		}
	}
}

func TestWriteWAVEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := WriteWAV(&b, nil); err != nil {
		t.Fatal(err)
	}
	if b.Len() != wavHeaderSize || string(b.Bytes()[:4]) != "RIFF" {
		t.Errorf("%d bytes: %q", b.Len(), b.Bytes())
	}
}
