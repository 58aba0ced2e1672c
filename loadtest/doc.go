// Package loadtest is the virtual phone farm: SIP user agents that take the
// voice OTP server's calls like people do, listen to what it says, press the
// key it asks for, and report the code they heard.
//
// It owns:
//
//   - [Phone]: a SIP UAS (package sip, Config.OnInvite) on its own UDP port
//     that treats each call per a [Plan] (answer, no key, busy, no answer,
//     hang up during the code, with an answer delay), answers with an SDP
//     answer (package media), sends silence, or a looped recording ([PhoneAudio]), back every 20 ms like a
//     microphone, presses keys as RFC 4733 events, and delivers a [CallReport]
//     when the call ends.
//   - [Recogniser] and [Listener]: recognition of the catalog prompts in the
//     decoded audio, incrementally while the call goes on, so the phone
//     presses the challenge digit while the server waits for it; [Parse] turns
//     the utterances into the challenge digit and the plays of the code.
//   - [WriteWAV]: what a phone heard, as a WAV file.
//   - [Driver]: the load tester. It runs a phone farm and starts verifications
//     over the HTTP API ([Client]) at a set rate and concurrency, one number
//     per call that encodes the phone's behaviour ([Mix], [Number]), judges
//     every call against what its behaviour should produce ([Expected]) and
//     checks every code heard; [Pacing] measures how evenly the server's
//     packets arrive; [Proc] samples the server's CPU and memory.
//   - [Report]: the verdicts and figures of a run, as a summary table, JSON,
//     and an HTML page with charts (go-echarts); [ProgressPrinter] shows a run
//     while it goes.
//
// It does not own the server: it talks to it only over SIP and RTP (and, in
// the load tester, HTTP), like any real phone; it imports sip, media and
// prompts, never callflow or the API. The code a phone hears is reported to
// its owner and never logged.
//
// Concurrency: a Phone runs one goroutine per call plus that call's RTP sender
// and receiver; Close ends them all. A Driver's Run runs one goroutine per call
// in flight (bounded by DriverConfig.Concurrency) and one sampler; each ends
// with its call's verdict or when Run's context is done. A Recogniser is immutable and shared by
// every call; a Listener belongs to one call.
package loadtest
