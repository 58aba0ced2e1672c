// Package otp is the verification domain of the voice OTP server: it owns what a verification is, how
// its code is made and checked, and which status it is in.
//
// It owns:
//
//   - The model: [Verification] (one request to deliver a code to one number), its [Call]s (one phone
//     call each) and their [Event]s, and the status values of both ([Status], [CallStatus]).
//   - Codes: a random per-verification [Secret] from which the code is derived as RFC 4226 HOTP with
//     github.com/pquerna/otp (always with explicit Digits), or a custom code given by the caller.
//     A code is write-only: it is never part of a response, an error string, a log line or a fmt verb;
//     only [Service.Code] (for the dialer) and [Service.Check] (constant-time) touch it.
//   - The rules: expiry, one pending verification per number, at most [Config.MaxCalls] calls and
//     [Config.MaxChecks] wrong checks per verification, single use ([Service]).
//   - The persistence contract it needs: [Store], with atomic create-if-absent, read-modify-write and
//     idempotency records with TTLs, so it can be kept in memory or in Redis.
//
// It does not own HTTP, authentication, webhooks or phone numbers (a number is stored as given; its
// callers validate it), the call queue (package dispatch), the call itself (package callflow), nor
// any Store implementation (package store/...). It imports no other package of this
// project; [Event] mirrors the call script's event JSON field for field so no import is needed.
//
// Concurrency: a [Service] is safe for concurrent use by any number of goroutines and processes that
// share one [Store]; every state change is one atomic [Store.Update], so concurrent checks of one code
// approve at most once and wrong checks are never lost.
//
// # Code lengths and HOTP
//
// HOTP's dynamic truncation (RFC 4226 §5.3) yields a 31-bit number (0..2147483647), which is reduced
// modulo 10^digits and zero-padded. pquerna/otp's Digits is a plain int and formats with %0*d, so every
// length from 4 to 10 works. The reduction is not perfectly uniform: for 6 digits the bias is below 0.05%,
// for 8 digits some codes are about 5% more likely than others, for 9 digits about 50%, and a 10-digit
// code always starts with 0, 1 or 2, so its code space is 2^31 (about 2.1e9) rather than 1e10. With at
// most [Config.MaxChecks] guesses every supported length stays far beyond guessing; lengths above 8 buy
// less than their digit count suggests.
package otp
