// Package calls owns the life of a verification and of its calls, from the start request to the last
// event of the last call: it sits between the HTTP API above and the call queue below.
//
// It owns:
//
//   - Starting: the per-number limits ([NumberSlots]: one live call per number, sends per window),
//     creating or joining the verification (package otp), enqueueing its call (package dispatch) and
//     what a full or unreachable queue means for the stored record.
//   - The call's life as the queue's [dispatch.Handler]: the claim in the store right before the INVITE
//     (so a job a durable queue delivers twice is dialled once), jobs whose node was lost (waited out,
//     then recorded node_lost), every call event → the stored call record, metrics and webhooks, the
//     result, and the number's live-call slot.
//   - The end of a verification reaching its live call: a verification that stops being pending
//     (canceled, approved, locked, failed or expired) stops its call on whichever node holds it (a
//     CANCEL while ringing, a BYE once answered, before another frame of the code), frees the number's
//     slot at once, and says so in the call record (hangup_cause) and a webhook.
//   - Expiry as it happens: due expiries are applied by a sweeper over an index of expiry times
//     ([Expiries]) and announced once (verification.expired), whichever node applies them.
//   - Checks and cancels, with their metrics and webhooks.
//
// It does not own HTTP (package api maps the errors here to statuses), the verification rules and the
// code (package otp), the queue and its scheduling (package dispatch), the call script (package
// callflow), webhook signing and delivery (package webhook), nor any shared state: the store packages
// implement [NumberSlots], [Expiries] and [Signals].
//
// # How a stop reaches a live call
//
// Each node keeps the calls it holds live in memory, by verification, with the function that cancels
// each call's context (with a *callflow.Stop cause, so the call records why). A verification is ended
// by an operation of this package on any node: [Calls.Cancel], [Calls.Check] (approved, locked), the
// expiry sweeper or a call's own expiry timer. That node stops its own live calls of the verification,
// frees the number's slot, and publishes the end through [Signals] (Redis pub/sub across nodes), so the
// node that holds the call stops it within a round trip. Pub/sub delivers at most once, so two
// backstops cover a lost message: before every play of the code the call reads the verification in
// the store (callflow.Request.Confirm: one read per play, not per packet) and does not play it unless
// the verification is still pending; and every Config.WatchInterval each node reads the verifications
// of the calls it holds live. A call also stops itself at its verification's ExpiresAt, by a timer of
// its node.
//
// The code is write-only: no log line, metric, webhook or error produced here contains it. Only
// Prepare reads it, to hand it to the call.
package calls
