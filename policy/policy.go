package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// The number type names of [Config.NumberTypes] and [Destination.Type], one per libphonenumber
// PhoneNumberType.
const (
	TypeMobile            = "mobile"
	TypeFixedLine         = "fixed_line"
	TypeFixedLineOrMobile = "fixed_line_or_mobile" // a region where the two cannot be told apart (US, CA)
	TypeTollFree          = "toll_free"
	TypePremiumRate       = "premium_rate"
	TypeSharedCost        = "shared_cost"
	TypeVoIP              = "voip"
	TypePersonalNumber    = "personal_number"
	TypePager             = "pager"
	TypeUAN               = "uan" // universal access ("company") numbers
	TypeVoicemail         = "voicemail"
	// TypeUnknown is accepted in Config.NumberTypes but never matches: a number whose type libphonenumber
	// cannot tell is not valid, and is refused as invalid_number before types are looked at.
	TypeUnknown = "unknown"
)

// typeNames is indexed by phonenumbers.PhoneNumberType.
var typeNames = [...]string{
	phonenumbers.FIXED_LINE:           TypeFixedLine,
	phonenumbers.MOBILE:               TypeMobile,
	phonenumbers.FIXED_LINE_OR_MOBILE: TypeFixedLineOrMobile,
	phonenumbers.TOLL_FREE:            TypeTollFree,
	phonenumbers.PREMIUM_RATE:         TypePremiumRate,
	phonenumbers.SHARED_COST:          TypeSharedCost,
	phonenumbers.VOIP:                 TypeVoIP,
	phonenumbers.PERSONAL_NUMBER:      TypePersonalNumber,
	phonenumbers.PAGER:                TypePager,
	phonenumbers.UAN:                  TypeUAN,
	phonenumbers.VOICEMAIL:            TypeVoicemail,
	phonenumbers.UNKNOWN:              TypeUnknown,
}

// NumberTypeNames returns every name [Config.NumberTypes] accepts, in libphonenumber's order.
func NumberTypeNames() []string { return slices.Clone(typeNames[:]) }

// DefaultNumberTypes returns the types allowed when [Config.NumberTypes] is empty: mobile, fixed_line
// and fixed_line_or_mobile, the numbers a person answers and that cost a normal rate.
func DefaultNumberTypes() []string {
	return []string{TypeMobile, TypeFixedLine, TypeFixedLineOrMobile}
}

// maxDigits is the most digits an E.164 number has (ITU-T E.164 §6.1), calling code included.
const maxDigits = 15

// nonGeoRegion is libphonenumber's region of calling codes that belong to no country.
const nonGeoRegion = "001"

// Config is the destination policy. The zero Config is valid and refuses every number that no allow
// prefix covers.
type Config struct {
	// Countries are the ISO 3166-1 alpha-2 codes, upper case ("US", "GB"), of the regions whose
	// numbers may be called; every region libphonenumber knows is accepted (including territories such
	// as "GG", "JE", "IM", "PR" that share another country's calling code: list them separately).
	// If empty, no country is allowed unless AllowAllCountries is set.
	Countries []string
	// AllowAllCountries allows the numbers of every region. It may not be set together with
	// Countries. Non-geographic numbers (+800, +881, +882, ...) are not in any region and stay
	// refused unless an allow prefix covers them. If false, only Countries are allowed.
	AllowAllCountries bool
	// NumberTypes are the type names that may be called (see [NumberTypeNames]). If empty,
	// [DefaultNumberTypes] are used.
	NumberTypes []string
	// DenyPrefixes and AllowPrefixes are E.164 prefixes: '+' and 1 to 15 digits, the first not 0
	// ("+1900", "+44", "+8823"). The longest prefix of either list that starts the number decides:
	// an allow prefix lets the number through whatever its country, type or validity (an operator's
	// exception, e.g. a test range), a deny prefix refuses it. A prefix in both lists denies. If
	// empty, no prefix applies.
	DenyPrefixes, AllowPrefixes []string
	// CallerIDs are the numbers (E.164) the operator owns and may present as caller ID; a request
	// that asks for another is refused (caller_id_not_allowed). If empty, a request may not choose
	// its caller ID at all: the trunk's own From is used.
	CallerIDs []string
	// Limits are the velocity limits on starts ([Limit]); [Policy.CountStart] applies them in order.
	Limits []Limit
	// Guard is the conversion guard ([Guard]); its zero value is off.
	Guard Guard
}

// prefixRule is what a configured prefix does.
type prefixRule uint8

const (
	prefixAllow prefixRule = iota + 1
	prefixDeny
)

// Policy decides which numbers may be called. It is immutable and safe for concurrent use; make one
// with [New]. The zero Policy refuses every number.
type Policy struct {
	countries map[string]struct{} // allowed regions; unused if allowAll
	allowAll  bool
	types     uint32 // bit 1<<PhoneNumberType set if the type is allowed
	prefixes  map[string]prefixRule
	maxPrefix int // length of the longest prefix in prefixes, '+' included
	callerIDs map[string]struct{}
	limits    []Limit
	guard     Guard
}

// Destination is what [Policy.Check] learned about a number.
type Destination struct {
	// Number is the number as given to Check (E.164).
	Number string
	// Country is the ISO 3166-1 alpha-2 region ("US"), "" for a non-geographic calling code (+800,
	// +870, +881, +882, +883, +979, ...) or a number refused before its region was known.
	Country string
	// Type is the number type name ("mobile", "premium_rate", ...), "" if refused before it was known.
	Type string
	// CountryCode is the calling code (1, 44, 882), 0 if refused before it was known.
	CountryCode int
}

// configError is an error of New; its text starts with the YAML key of the field at fault.
type configError struct {
	field, msg string
}

func (e *configError) Error() string { return "policy." + e.field + ": " + e.msg }
func (e *configError) Unwrap() error { return ErrInvalidConfig }

// New validates cfg and returns its Policy. The error wraps [ErrInvalidConfig] and lists every problem,
// each naming its field ("policy.countries: ..."): an unknown or lower-case country code, an unknown
// type name, a malformed prefix, a value listed twice in one field, or AllowAllCountries together with
// Countries.
//
// New also compiles, once per process, libphonenumber's patterns for the allowed countries, so the
// first Check of a number there is as fast as the next.
func New(cfg Config) (*Policy, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &configError{field: field, msg: fmt.Sprintf(format, args...)})
	}

	p := &Policy{
		countries: make(map[string]struct{}, len(cfg.Countries)),
		allowAll:  cfg.AllowAllCountries,
		prefixes:  make(map[string]prefixRule, len(cfg.DenyPrefixes)+len(cfg.AllowPrefixes)),
	}

	if cfg.AllowAllCountries && len(cfg.Countries) > 0 {
		bad("allow_all_countries", "set together with policy.countries; set one or the other")
	}
	regions := phonenumbers.GetSupportedRegions()
	for _, c := range cfg.Countries {
		switch {
		case c == nonGeoRegion:
			bad("countries", "%q is not a country: non-geographic numbers are allowed by allow prefixes (e.g. \"+8823\")", c)
		case !regions[strings.ToUpper(c)]:
			bad("countries", "%q is not an ISO 3166-1 alpha-2 region known to libphonenumber (e.g. \"US\", \"GB\")", c)
		case c != strings.ToUpper(c):
			bad("countries", "%q must be upper case (%q)", c, strings.ToUpper(c))
		default:
			if _, dup := p.countries[c]; dup {
				bad("countries", "%q is listed twice", c)
			}
			p.countries[c] = struct{}{}
		}
	}

	types := cfg.NumberTypes
	if len(types) == 0 {
		types = DefaultNumberTypes()
	}
	for _, name := range types {
		i := slices.Index(typeNames[:], name)
		switch {
		case i < 0:
			bad("number_types", "%q is not a number type (one of %s)", name, strings.Join(typeNames[:], ", "))
		case p.types&(1<<i) != 0:
			bad("number_types", "%q is listed twice", name)
		default:
			p.types |= 1 << i
		}
	}

	addPrefixes := func(field string, list []string, rule prefixRule) {
		seen := make(map[string]struct{}, len(list))
		for _, prefix := range list {
			if !validPrefix(prefix) {
				bad(field, "%q is not '+' followed by 1 to %d digits, the first not 0", prefix, maxDigits)
				continue
			}
			if _, dup := seen[prefix]; dup {
				bad(field, "%q is listed twice", prefix)
				continue
			}
			seen[prefix] = struct{}{}
			p.prefixes[prefix] = max(p.prefixes[prefix], rule) // in both lists: deny wins
			p.maxPrefix = max(p.maxPrefix, len(prefix))
		}
	}
	addPrefixes("deny_prefixes", cfg.DenyPrefixes, prefixDeny)
	addPrefixes("allow_prefixes", cfg.AllowPrefixes, prefixAllow)

	p.callerIDs = make(map[string]struct{}, len(cfg.CallerIDs))
	for _, id := range cfg.CallerIDs {
		if n := len(id) - 1; n < 8 || n > maxDigits || id[0] != '+' || id[1] == '0' || !allDigits(id[1:]) {
			bad("caller_ids", "%q is not an E.164 number ('+' and 8 to 15 digits)", id)
			continue
		}
		if _, dup := p.callerIDs[id]; dup {
			bad("caller_ids", "%q is listed twice", id)
		}
		p.callerIDs[id] = struct{}{}
	}
	for i, l := range cfg.Limits {
		if err := l.validate(); err != nil {
			bad("limits", "limit %d (%s): %v", i+1, l.Scope, err)
		}
	}
	p.limits = slices.Clone(cfg.Limits)
	if err := cfg.Guard.validate(); err != nil {
		bad("guard", "%v", err)
	}
	p.guard = cfg.Guard
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.warm()
	return p, nil
}

// warm classifies an example number of every type of every allowed region, which compiles and caches
// (process-wide, in libphonenumber) the patterns Check will need.
func (p *Policy) warm() {
	for region := range p.countries {
		for t := range phonenumbers.UNKNOWN {
			if n := phonenumbers.GetExampleNumberForType(region, t); n != nil {
				phonenumbers.GetNumberType(n)
			}
		}
	}
}

// AllowsAll reports whether the policy allows the numbers of every country (AllowAllCountries with no
// country list); number types, prefixes and the refusal of non-geographic numbers still apply.
func (p *Policy) AllowsAll() bool { return p.allowAll }

// Check decides whether number may be called. The number must be in E.164 form ('+' and digits, no
// spaces); anything else is refused as invalid. The rules apply in this order:
//
//  1. The longest configured prefix starting the number decides, if any: an allow prefix accepts the
//     number (even one libphonenumber does not know: the operator's exception, e.g. a test range), a
//     deny prefix refuses it (prefix_denied).
//  2. The number must be valid for its calling code and region according to libphonenumber, else
//     invalid_number (rules format, unassigned_calling_code, invalid_for_region).
//  3. A non-geographic number is refused (country_not_allowed, rule non_geographic).
//  4. Its region must be allowed (country_not_allowed, rule countries).
//  5. Its type must be allowed (number_type_not_allowed).
//
// The error is a [*Refusal]. The Destination is returned in both cases, filled with what was learned
// before the verdict: Number always; Country, Type and CountryCode once the number was found valid.
func (p *Policy) Check(number string) (Destination, error) {
	d := Destination{Number: number}
	if n := len(number) - 1; n < 1 || n > maxDigits || number[0] != '+' || number[1] == '0' || !allDigits(number[1:]) {
		return d, refuse(CodeInvalidNumber, RuleFormat, "the number is not a plus sign followed by up to fifteen digits")
	}
	// An operator's prefix decides first: a deny refuses whatever the number is, an allow accepts it
	// even where libphonenumber does not know it (a test range such as +1555 01xx, a new number block).
	prefix, rule := p.longestPrefix(number)
	if rule == prefixDeny {
		return d, refuse(CodePrefixDenied, RuleDenyPrefix, denyReason(number, prefix))
	}
	allowed := rule == prefixAllow
	num, err := phonenumbers.Parse(number, "")
	if err != nil {
		if allowed {
			return d, nil
		}
		if errors.Is(err, phonenumbers.ErrInvalidCountryCode) {
			return d, refuse(CodeInvalidNumber, RuleUnassignedCallingCode, "the number's calling code is not assigned")
		}
		return d, refuse(CodeInvalidNumber, RuleFormat, "the number is too short to be a phone number")
	}
	// GetNumberType and IsValidNumber resolve the same region and metadata, and a number is valid
	// exactly when its type is not UNKNOWN (asserted by FuzzCheck); one call does both.
	typ := phonenumbers.GetNumberType(num)
	if typ == phonenumbers.UNKNOWN || int(typ) >= len(typeNames) {
		if allowed {
			d.CountryCode, d.Type = int(num.GetCountryCode()), TypeUnknown
			return d, nil
		}
		return d, refuse(CodeInvalidNumber, RuleInvalidForRegion, "the number is not valid for its country or network")
	}
	d.CountryCode = int(num.GetCountryCode())
	// Most calling codes have one region, looked up in a map; only shared ones (+1, +44, +7, ...) need
	// the number's digits matched again.
	region := phonenumbers.GetRegionCodeForCountryCode(d.CountryCode)
	if len(phonenumbers.GetRegionCodesForCountryCode(d.CountryCode)) > 1 {
		region = phonenumbers.GetRegionCodeForNumber(num)
	}
	d.Type = typeNames[typ]
	if region != nonGeoRegion {
		d.Country = region
	}
	if allowed {
		return d, nil
	}
	if region == nonGeoRegion {
		return d, refuse(CodeCountryNotAllowed, RuleNonGeographic,
			"non-geographic numbers (international networks, satellite phones) may not be called")
	}
	if _, ok := p.countries[region]; !ok && !p.allowAll {
		return d, refuse(CodeCountryNotAllowed, RuleCountries, "numbers in "+region+" may not be called")
	}
	if p.types&(1<<typ) == 0 {
		return d, refuse(CodeNumberTypeNotAllowed, RuleNumberTypes, typeNames[typ]+" numbers may not be called")
	}
	return d, nil
}

// longestPrefix returns the longest configured prefix that starts number and its rule, or 0 if none
// does. number is E.164, so at most 15 map lookups of substrings (no allocation).
func (p *Policy) longestPrefix(number string) (string, prefixRule) {
	for l := min(len(number), p.maxPrefix); l >= 2; l-- {
		if rule, ok := p.prefixes[number[:l]]; ok {
			return number[:l], rule
		}
	}
	return "", 0
}

// denyReason names the denied prefix if MaskNumber would show all of it, so the reason never shows
// more of the number than a masked log line.
func denyReason(number, prefix string) string {
	if head, _ := maskSplit(len(number) - 1); len(prefix)-1 <= head {
		return "the number is under the denied prefix " + prefix
	}
	return "the number is under a denied prefix"
}

func refuse(code, rule, reason string) *Refusal {
	return &Refusal{Code: code, Rule: rule, Reason: reason}
}

// validPrefix reports whether s is '+' and 1 to 15 digits, the first not 0.
func validPrefix(s string) bool {
	n := len(s) - 1
	return n >= 1 && n <= maxDigits && s[0] == '+' && s[1] != '0' && allDigits(s[1:])
}
