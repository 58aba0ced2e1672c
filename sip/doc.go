// Package sip is the SIP user agent of the voice OTP server, built on
// emiago/sipgo. It places outbound calls through an operator's trunk: INVITE
// with an SDP offer, provisional responses, digest authentication, ACK, CANCEL
// on ring timeout, and BYE in either direction (RFC 3261). It answers the few
// requests a calling UA must handle: in-dialog BYE and INFO, OPTIONS, and 481
// for anything that matches no dialog. With Config.OnInvite set it also takes
// calls (RFC 3261 §13.3): 180, 200 with the SDP answer retransmitted until
// the ACK, rejections, CANCEL, and BYE from either side; the virtual phones of
// the load tester are built on it.
//
// Calls leave over UDP, TCP or TLS (RFC 3261 §18, §26; certificates are
// verified, with a custom CA if configured, and nothing ever falls back to
// cleartext). Trunks adds what peering with carriers needs: several trunks
// with priorities and weights, registration with digest authentication
// (RFC 3261 §10, §22), OPTIONS health probes, failover when a trunk (not the
// callee) fails, per-trunk caller ID, P-Asserted-Identity and Privacy
// (RFC 3325, RFC 3323), outbound proxy, number rewriting, channel and
// calls-per-second limits. A call's own DialRequest.CallerID, if set,
// replaces the configured caller ID and P-Asserted-Identity. DTMF sent in SIP INFO (RFC 6086) reaches
// Call.Digits. Config.Trace logs every message with credentials redacted.
//
// It owns the SIP signalling sockets and connections and the dialogs on
// them. It does not own media: the SDP offer is built, and the answer parsed,
// by package media; the RTP stream is none of this package's business. Codec
// order, DTMF mode and digits to send after the answer are carried in
// TrunkConfig for the call script, not used here. It imports no other
// package of the project.
//
// Each UA owns its own sipgo UserAgent, transport and transaction layers, so
// several UAs in one process do not share state. The package never changes
// sipgo's package-level settings (sip.T1, sip.SIPDebug, the default logger).
package sip
