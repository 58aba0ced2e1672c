// Package media moves the audio of one call: it owns the RTP side of a voice OTP call and nothing else.
//
// It owns:
//
//   - RTP port allocation ([ListenRTP], [OpenPort]): one even UDP port per call from a configured range
//     (RFC 3550 §11); or, in the dense media mode ([Mux]), a few shared sockets ("lanes", one per core)
//     that carry many calls each, with batched sendmmsg/recvmmsg and one pacing loop per lane. Both give
//     a call a [Port], which makes its Sender and Receiver.
//   - The SDP offer/answer model for that one audio stream (RFC 3264): [Offer.Marshal] writes our offer
//     (PCMU, PCMA, telephone-event), [ParseAnswer] negotiates the remote answer into an [Answer]. For the
//     answering side (the load tester's virtual phones), [ParseOffer] reads a remote offer,
//     [RemoteOffer.Negotiate] picks the codec and [MarshalAnswer] writes the answer.
//   - Sending ([Sender]): one pacing goroutine per call that emits a packet every 20 ms on absolute
//     deadlines, so the stream never drifts, with the RTP header rules of RFC 3550 §5.1 and RFC 3551 §4.1,
//     and key presses as RFC 4733 telephone-events in the same stream ([Sender.PlayDigit]).
//   - Receiving ([Receiver]): strict source checks, RFC 4733 telephone-event (DTMF) detection, in-band
//     DTMF detection for trunks without telephone-event ([ToneDetector], Goertzel per ITU-T Q.23/Q.24),
//     and the RFC 3550 receiver statistics (cumulative loss, Appendix A.3; interarrival jitter, §6.4.1
//     and A.8).
//
// It does not own SIP signalling (package sip decides when a stream starts and ends and carries the SDP),
// nor the prompts (package prompts). Frames arrive pre-encoded: a [Sender] never transcodes or resamples
// per call, it only stamps headers onto 160-byte G.711 frames it is given, so the per-packet path allocates
// nothing. media imports no other package of this project.
//
// SDP is parsed and written with github.com/pion/sdp/v3 rather than by hand: SDP from trunks arrives from
// the network, and a parser that is maintained and fuzzed upstream is a smaller risk than a new one. RTP
// headers are handled with github.com/pion/rtp, whose MarshalTo and Unmarshal work in caller-owned
// buffers. G.711 encoding (github.com/zaf/g711) belongs to whoever makes the frames; the [Receiver]
// decodes G.711 itself only when [ReceiverConfig.InbandDTMF] is set, to look for DTMF tones. The
// Goertzel detector is written here because no maintained Go library detects DTMF with the twist,
// duration and energy checks that keep speech from triggering it.
//
// Concurrency: a [Sender] and a [Receiver] each have one Run method, which is their only goroutine and
// ends when its context is done. Every other method is safe to call concurrently with Run. Neither
// closes the *net.UDPConn it is given; the caller that called [ListenRTP] closes it after Run returns.
// On a [Mux] port, Run only registers with the lane, whose goroutines do the per-packet work; the
// per-packet rules (pacing, headers, source checks, statistics) are the same code in both modes.
package media
