package policy

import (
	"errors"
	"time"
)

// Sentinel errors callers branch on with errors.Is. Every [*Refusal] matches ErrRefused and the one
// sentinel of its Code.
var (
	// ErrRefused matches every refusal, whatever its code.
	ErrRefused = errors.New("policy: refused")
	// ErrInvalidNumber matches refusals with Code [CodeInvalidNumber].
	ErrInvalidNumber = errors.New("policy: invalid number")
	// ErrCountryNotAllowed matches refusals with Code [CodeCountryNotAllowed].
	ErrCountryNotAllowed = errors.New("policy: country not allowed")
	// ErrNumberTypeNotAllowed matches refusals with Code [CodeNumberTypeNotAllowed].
	ErrNumberTypeNotAllowed = errors.New("policy: number type not allowed")
	// ErrPrefixDenied matches refusals with Code [CodePrefixDenied].
	ErrPrefixDenied = errors.New("policy: prefix denied")
	// ErrCallerIDNotAllowed matches refusals with Code [CodeCallerIDNotAllowed].
	ErrCallerIDNotAllowed = errors.New("policy: caller id not allowed")
	// ErrTooManyStarts matches refusals with Code [CodeTooManyStarts].
	ErrTooManyStarts = errors.New("policy: too many starts")
	// ErrPrefixPaused matches refusals with Code [CodePrefixPaused].
	ErrPrefixPaused = errors.New("policy: prefix paused")

	// ErrInvalidConfig is wrapped by every error of [New]; the error's text names the field
	// ("policy.countries: ...").
	ErrInvalidConfig = errors.New("policy: invalid config")
)

// The codes of a [Refusal]: the API error codes, one per reason a number may not be called.
const (
	// CodeInvalidNumber: the number is not '+' and up to 15 digits, its calling code is unassigned
	// (+999), or libphonenumber does not consider it valid for its region or network, and no allow
	// prefix covers it.
	CodeInvalidNumber = "invalid_number"
	// CodeCountryNotAllowed: the number's region is not allowed, or it is non-geographic.
	CodeCountryNotAllowed = "country_not_allowed"
	// CodeNumberTypeNotAllowed: the number's type (premium_rate, personal_number, ...) is not allowed.
	CodeNumberTypeNotAllowed = "number_type_not_allowed"
	// CodePrefixDenied: the longest configured prefix matching the number is a deny prefix.
	CodePrefixDenied = "prefix_denied"
	// CodeCallerIDNotAllowed: the caller ID asked for is not one of Config.CallerIDs.
	CodeCallerIDNotAllowed = "caller_id_not_allowed"
	// CodeTooManyStarts: a velocity limit ([Limit]) is reached; the Refusal's RetryAfter says when
	// the oldest counted start leaves its window.
	CodeTooManyStarts = "too_many_starts"
)

// The rules of a [Refusal], finer than its code, for the audit log.
const (
	// RuleFormat (invalid_number): the number is not '+' followed by 1 to 15 digits, the first not 0,
	// or is too short to be a phone number at all.
	RuleFormat = "format"
	// RuleUnassignedCallingCode (invalid_number): no country or network has the calling code (+999)
	// or no calling code could be read.
	RuleUnassignedCallingCode = "unassigned_calling_code"
	// RuleInvalidForRegion (invalid_number): the calling code exists but the number does not fit any
	// range of its region or network (wrong length, unassigned range).
	RuleInvalidForRegion = "invalid_for_region"
	// RuleCountries (country_not_allowed): the region is not in Config.Countries.
	RuleCountries = "countries"
	// RuleNonGeographic (country_not_allowed): the calling code belongs to no country (+800, +870,
	// +881, +882, +883, +979, ...) and no allow prefix covers the number.
	RuleNonGeographic = "non_geographic"
	// RuleNumberTypes (number_type_not_allowed): the type is not in Config.NumberTypes.
	RuleNumberTypes = "number_types"
	// RuleDenyPrefix (prefix_denied): the longest matching prefix is in Config.DenyPrefixes.
	RuleDenyPrefix = "deny_prefix"
	// RuleCallerIDs (caller_id_not_allowed): the caller ID is not in Config.CallerIDs.
	RuleCallerIDs = "caller_ids"
	// The velocity rules (too_many_starts) are named by their [Scope]: api_key, country, prefix,
	// global.
)

// Refusal is the error of a refused number. Its text, like its fields, never contains more of the
// number than [MaskNumber] shows, so it may be logged and returned to API clients.
type Refusal struct {
	// Code is the API error code, one of the Code constants.
	Code string
	// Rule names the rule that refused, one of the Rule constants.
	Rule string
	// Reason is a sentence for humans, e.g. "numbers in GB may not be called".
	Reason string
	// RetryAfter, for too_many_starts, is how long until the oldest counted start leaves its window;
	// 0 for the other codes, which no retry cures.
	RetryAfter time.Duration
}

// Error formats the refusal as "policy: <code> (<rule>): <reason>".
func (r *Refusal) Error() string {
	return "policy: " + r.Code + " (" + r.Rule + "): " + r.Reason
}

// Is reports whether target is [ErrRefused] or the sentinel of r.Code.
func (r *Refusal) Is(target error) bool {
	return target == ErrRefused || (target != nil && target == codeSentinel(r.Code))
}

// codeSentinel maps a Code to its sentinel, nil for an unknown code.
func codeSentinel(code string) error {
	switch code {
	case CodeInvalidNumber:
		return ErrInvalidNumber
	case CodeCountryNotAllowed:
		return ErrCountryNotAllowed
	case CodeCallerIDNotAllowed:
		return ErrCallerIDNotAllowed
	case CodeTooManyStarts:
		return ErrTooManyStarts
	case CodePrefixPaused:
		return ErrPrefixPaused
	case CodeNumberTypeNotAllowed:
		return ErrNumberTypeNotAllowed
	case CodePrefixDenied:
		return ErrPrefixDenied
	}
	return nil
}
