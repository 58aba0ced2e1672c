package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// Numbers whose classification the tests rely on, checked against libphonenumber's metadata by
// TestNumbersFixture so that a metadata change shows up as one clear failure.
const (
	usFixedOrMobile = "+12015550123"      // US, fixed_line_or_mobile
	usNewYork       = "+12125551234"      // US, fixed_line_or_mobile
	usPremium       = "+19005551234"      // US, premium_rate
	usTollFree      = "+18005551234"      // US, toll_free
	us555           = "+15551234567"      // +1 555: unassigned, invalid
	usBadArea       = "+11234567890"      // area code 123 does not exist
	gbMobile        = "+447400123456"     // GB, mobile
	gbFixed         = "+441212345678"     // GB, fixed_line
	gbPersonal      = "+447012345678"     // GB, personal_number (+44 70)
	gbDrama         = "+447700900123"     // GB, Ofcom's drama range: invalid
	frMobile        = "+33612345678"      // FR, mobile
	nuFixed         = "+6834002"          // NU (Niue), fixed_line, 7 digits
	acShort         = "+2474567"          // AC, too short: invalid
	intlNetwork882  = "+8823123456789"    // 001, voip
	intlNetwork883  = "+883510012345"     // 001, voip
	inmarsat870     = "+870773111632"     // 001, mobile
	iridium881      = "+881612345678"     // 001, mobile
	intlPremium979  = "+979123456789"     // 001, premium_rate
	intlFreephone   = "+80012345678"      // 001, toll_free
	unassigned999   = "+999123456789"     // calling code 999 is unassigned
	invalid882      = "+88212345678"      // 001 but no valid +882 range
	tooLong         = "+1201555012345678" // 16 digits
)

func TestNumbersFixture(t *testing.T) {
	tests := []struct {
		number, region string
		typ            phonenumbers.PhoneNumberType
		valid          bool
	}{
		{usFixedOrMobile, "US", phonenumbers.FIXED_LINE_OR_MOBILE, true},
		{usNewYork, "US", phonenumbers.FIXED_LINE_OR_MOBILE, true},
		{usPremium, "US", phonenumbers.PREMIUM_RATE, true},
		{usTollFree, "US", phonenumbers.TOLL_FREE, true},
		{us555, "", phonenumbers.UNKNOWN, false},
		{usBadArea, "", phonenumbers.UNKNOWN, false},
		{gbMobile, "GB", phonenumbers.MOBILE, true},
		{gbFixed, "GB", phonenumbers.FIXED_LINE, true},
		{gbPersonal, "GB", phonenumbers.PERSONAL_NUMBER, true},
		{gbDrama, "", phonenumbers.UNKNOWN, false},
		{frMobile, "FR", phonenumbers.MOBILE, true},
		{nuFixed, "NU", phonenumbers.FIXED_LINE, true},
		{acShort, "AC", phonenumbers.UNKNOWN, false},
		{intlNetwork882, "001", phonenumbers.VOIP, true},
		{intlNetwork883, "001", phonenumbers.VOIP, true},
		{inmarsat870, "001", phonenumbers.MOBILE, true},
		{iridium881, "001", phonenumbers.MOBILE, true},
		{intlPremium979, "001", phonenumbers.PREMIUM_RATE, true},
		{intlFreephone, "001", phonenumbers.TOLL_FREE, true},
		{invalid882, "001", phonenumbers.UNKNOWN, false},
	}
	for _, tt := range tests {
		t.Run(tt.number, func(t *testing.T) {
			n, err := phonenumbers.Parse(tt.number, "")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := phonenumbers.GetRegionCodeForNumber(n); got != tt.region {
				t.Errorf("region = %q, want %q", got, tt.region)
			}
			if got := phonenumbers.GetNumberType(n); got != tt.typ {
				t.Errorf("type = %v, want %v", got, tt.typ)
			}
			if got := phonenumbers.IsValidNumber(n); got != tt.valid {
				t.Errorf("IsValidNumber = %v, want %v", got, tt.valid)
			}
		})
	}
	if _, err := phonenumbers.Parse(unassigned999, ""); !errors.Is(err, phonenumbers.ErrInvalidCountryCode) {
		t.Errorf("Parse(%s) error = %v, want ErrInvalidCountryCode", unassigned999, err)
	}
}

func mustNew(t testing.TB, cfg Config) *Policy {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func TestCheck(t *testing.T) {
	usGB := Config{Countries: []string{"US", "GB"}}
	tests := []struct {
		name   string
		cfg    Config
		number string
		want   Destination // compared when the number is allowed
		code   string      // "" if allowed
		rule   string
	}{
		// allowed
		{name: "US fixed or mobile", cfg: usGB, number: usFixedOrMobile,
			want: Destination{Number: usFixedOrMobile, Country: "US", Type: TypeFixedLineOrMobile, CountryCode: 1}},
		{name: "GB mobile", cfg: usGB, number: gbMobile,
			want: Destination{Number: gbMobile, Country: "GB", Type: TypeMobile, CountryCode: 44}},
		{name: "GB fixed line", cfg: usGB, number: gbFixed,
			want: Destination{Number: gbFixed, Country: "GB", Type: TypeFixedLine, CountryCode: 44}},
		{name: "7-digit Niue number", cfg: Config{Countries: []string{"NU"}}, number: nuFixed,
			want: Destination{Number: nuFixed, Country: "NU", Type: TypeFixedLine, CountryCode: 683}},

		// invalid_number
		{name: "empty", cfg: usGB, number: "", code: CodeInvalidNumber, rule: RuleFormat},
		{name: "plus only", cfg: usGB, number: "+", code: CodeInvalidNumber, rule: RuleFormat},
		{name: "no plus", cfg: usGB, number: "12015550123", code: CodeInvalidNumber, rule: RuleFormat},
		{name: "spaces", cfg: usGB, number: "+1 201 555 0123", code: CodeInvalidNumber, rule: RuleFormat},
		{name: "leading zero", cfg: usGB, number: "+0201555012", code: CodeInvalidNumber, rule: RuleFormat},
		{name: "16 digits", cfg: usGB, number: tooLong, code: CodeInvalidNumber, rule: RuleFormat},
		{name: "tel URI", cfg: usGB, number: "tel:" + usFixedOrMobile, code: CodeInvalidNumber, rule: RuleFormat},
		{name: "full-width digits", cfg: usGB, number: "+１２０１５５５０１２３", code: CodeInvalidNumber, rule: RuleFormat},
		{name: "too short to parse", cfg: usGB, number: "+447", code: CodeInvalidNumber, rule: RuleFormat},
		{name: "unassigned +999", cfg: usGB, number: unassigned999, code: CodeInvalidNumber, rule: RuleUnassignedCallingCode},
		{name: "+1 555 is unassigned", cfg: usGB, number: us555, code: CodeInvalidNumber, rule: RuleInvalidForRegion},
		{name: "no such US area code", cfg: usGB, number: usBadArea, code: CodeInvalidNumber, rule: RuleInvalidForRegion},
		{name: "GB drama range", cfg: usGB, number: gbDrama, code: CodeInvalidNumber, rule: RuleInvalidForRegion},
		{name: "too short for AC", cfg: Config{AllowAllCountries: true}, number: acShort, code: CodeInvalidNumber, rule: RuleInvalidForRegion},
		{name: "invalid +882 range", cfg: usGB, number: invalid882, code: CodeInvalidNumber, rule: RuleInvalidForRegion},
		{name: "unknown type allowed changes nothing",
			cfg: Config{Countries: []string{"US"}, NumberTypes: []string{TypeUnknown}}, number: us555, code: CodeInvalidNumber, rule: RuleInvalidForRegion},

		// country_not_allowed
		{name: "zero config refuses", cfg: Config{}, number: usFixedOrMobile, code: CodeCountryNotAllowed, rule: RuleCountries},
		{name: "FR not listed", cfg: usGB, number: frMobile, code: CodeCountryNotAllowed, rule: RuleCountries},
		{name: "+882 network", cfg: usGB, number: intlNetwork882, code: CodeCountryNotAllowed, rule: RuleNonGeographic},
		{name: "+883 network", cfg: usGB, number: intlNetwork883, code: CodeCountryNotAllowed, rule: RuleNonGeographic},
		{name: "+870 Inmarsat", cfg: usGB, number: inmarsat870, code: CodeCountryNotAllowed, rule: RuleNonGeographic},
		{name: "+881 satellite", cfg: usGB, number: iridium881, code: CodeCountryNotAllowed, rule: RuleNonGeographic},
		{name: "+979 premium", cfg: usGB, number: intlPremium979, code: CodeCountryNotAllowed, rule: RuleNonGeographic},
		{name: "+800 freephone", cfg: usGB, number: intlFreephone, code: CodeCountryNotAllowed, rule: RuleNonGeographic},

		// number_type_not_allowed
		{name: "+1900 premium", cfg: usGB, number: usPremium, code: CodeNumberTypeNotAllowed, rule: RuleNumberTypes},
		{name: "+1800 toll free", cfg: usGB, number: usTollFree, code: CodeNumberTypeNotAllowed, rule: RuleNumberTypes},
		{name: "+44 70 personal", cfg: usGB, number: gbPersonal, code: CodeNumberTypeNotAllowed, rule: RuleNumberTypes},
		{name: "explicit types replace the defaults",
			cfg: Config{Countries: []string{"GB"}, NumberTypes: []string{TypeFixedLine}}, number: gbMobile,
			code: CodeNumberTypeNotAllowed, rule: RuleNumberTypes},
		{name: "premium allowed by type",
			cfg: Config{Countries: []string{"US"}, NumberTypes: []string{TypePremiumRate}}, number: usPremium,
			want: Destination{Number: usPremium, Country: "US", Type: TypePremiumRate, CountryCode: 1}},

		// prefixes
		{name: "deny prefix", cfg: Config{Countries: []string{"US"}, DenyPrefixes: []string{"+1201"}},
			number: usFixedOrMobile, code: CodePrefixDenied, rule: RuleDenyPrefix},
		{name: "deny prefix before type", cfg: Config{Countries: []string{"US"}, DenyPrefixes: []string{"+1900"}},
			number: usPremium, code: CodePrefixDenied, rule: RuleDenyPrefix},
		{name: "deny prefix of another country", cfg: Config{Countries: []string{"GB"}, DenyPrefixes: []string{"+1"}},
			number: usFixedOrMobile, code: CodePrefixDenied, rule: RuleDenyPrefix},
		{name: "deny the whole number", cfg: Config{Countries: []string{"US"}, DenyPrefixes: []string{usFixedOrMobile}},
			number: usFixedOrMobile, code: CodePrefixDenied, rule: RuleDenyPrefix},
		{name: "deny prefix not matching", cfg: Config{Countries: []string{"US"}, DenyPrefixes: []string{"+1202"}},
			number: usFixedOrMobile, want: Destination{Number: usFixedOrMobile, Country: "US", Type: TypeFixedLineOrMobile, CountryCode: 1}},
		{name: "allow prefix overrides country", cfg: Config{Countries: []string{"US"}, AllowPrefixes: []string{"+44"}},
			number: gbMobile, want: Destination{Number: gbMobile, Country: "GB", Type: TypeMobile, CountryCode: 44}},
		{name: "allow prefix overrides type", cfg: Config{Countries: []string{"US"}, AllowPrefixes: []string{"+1900555"}},
			number: usPremium, want: Destination{Number: usPremium, Country: "US", Type: TypePremiumRate, CountryCode: 1}},
		{name: "allow prefix overrides non-geographic", cfg: Config{AllowPrefixes: []string{"+8823"}},
			number: intlNetwork882, want: Destination{Number: intlNetwork882, Type: TypeVoIP, CountryCode: 882}},
		{name: "allow prefix covers only its numbers", cfg: Config{AllowPrefixes: []string{"+8823"}},
			number: intlNetwork883, code: CodeCountryNotAllowed, rule: RuleNonGeographic},
		{name: "longer allow beats shorter deny",
			cfg:    Config{DenyPrefixes: []string{"+1"}, AllowPrefixes: []string{"+1201"}},
			number: usFixedOrMobile, want: Destination{Number: usFixedOrMobile, Country: "US", Type: TypeFixedLineOrMobile, CountryCode: 1}},
		{name: "shorter allow loses to longer deny",
			cfg:    Config{Countries: []string{"US"}, DenyPrefixes: []string{"+1900"}, AllowPrefixes: []string{"+1"}},
			number: usPremium, code: CodePrefixDenied, rule: RuleDenyPrefix},
		{name: "longest of many",
			cfg:    Config{DenyPrefixes: []string{"+1", "+1201555"}, AllowPrefixes: []string{"+12", "+1201"}},
			number: usFixedOrMobile, code: CodePrefixDenied, rule: RuleDenyPrefix},
		{name: "longest of many, other number",
			cfg:    Config{DenyPrefixes: []string{"+1", "+1201555"}, AllowPrefixes: []string{"+12", "+1201"}},
			number: usNewYork, want: Destination{Number: usNewYork, Country: "US", Type: TypeFixedLineOrMobile, CountryCode: 1}},
		{name: "equal length: deny wins",
			cfg:    Config{Countries: []string{"US"}, DenyPrefixes: []string{"+1201"}, AllowPrefixes: []string{"+1201"}},
			number: usFixedOrMobile, code: CodePrefixDenied, rule: RuleDenyPrefix},

		// AllowAllCountries
		{name: "all countries: FR", cfg: Config{AllowAllCountries: true}, number: frMobile,
			want: Destination{Number: frMobile, Country: "FR", Type: TypeMobile, CountryCode: 33}},
		{name: "all countries: still no non-geographic", cfg: Config{AllowAllCountries: true}, number: intlNetwork882,
			code: CodeCountryNotAllowed, rule: RuleNonGeographic},
		{name: "all countries: still no premium", cfg: Config{AllowAllCountries: true}, number: usPremium,
			code: CodeNumberTypeNotAllowed, rule: RuleNumberTypes},
		{name: "all countries: deny prefix applies", cfg: Config{AllowAllCountries: true, DenyPrefixes: []string{"+33"}},
			number: frMobile, code: CodePrefixDenied, rule: RuleDenyPrefix},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, tt.cfg)
			d, err := p.Check(tt.number)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("Check(%s) = %v, want allowed", tt.number, err)
				}
				if d != tt.want {
					t.Errorf("Check(%s) = %+v, want %+v", tt.number, d, tt.want)
				}
				return
			}
			var r *Refusal
			if !errors.As(err, &r) {
				t.Fatalf("Check(%s) = %+v, %v; want a *Refusal", tt.number, d, err)
			}
			if r.Code != tt.code || r.Rule != tt.rule {
				t.Errorf("Check(%s) = %s/%s, want %s/%s", tt.number, r.Code, r.Rule, tt.code, tt.rule)
			}
			if d.Number != tt.number {
				t.Errorf("Destination.Number = %q, want %q", d.Number, tt.number)
			}
			checkReason(t, tt.number, r)
		})
	}
}

// TestCheckRefusedDestination: a refusal after the number was classified still reports what was
// learned, for the audit log and metrics.
func TestCheckRefusedDestination(t *testing.T) {
	p := mustNew(t, Config{Countries: []string{"US"}})
	tests := []struct {
		number string
		want   Destination
	}{
		{usPremium, Destination{Number: usPremium, Country: "US", Type: TypePremiumRate, CountryCode: 1}},
		{inmarsat870, Destination{Number: inmarsat870, Type: TypeMobile, CountryCode: 870}},
		{gbMobile, Destination{Number: gbMobile, Country: "GB", Type: TypeMobile, CountryCode: 44}},
		{us555, Destination{Number: us555}},
		{unassigned999, Destination{Number: unassigned999}},
	}
	for _, tt := range tests {
		t.Run(tt.number, func(t *testing.T) {
			d, err := p.Check(tt.number)
			if err == nil {
				t.Fatal("allowed, want refused")
			}
			if d != tt.want {
				t.Errorf("Destination = %+v, want %+v", d, tt.want)
			}
		})
	}
}

func TestRefusalErrors(t *testing.T) {
	sentinels := map[string]error{
		CodeInvalidNumber:        ErrInvalidNumber,
		CodeCountryNotAllowed:    ErrCountryNotAllowed,
		CodeNumberTypeNotAllowed: ErrNumberTypeNotAllowed,
		CodePrefixDenied:         ErrPrefixDenied,
	}
	p := mustNew(t, Config{Countries: []string{"US"}, DenyPrefixes: []string{"+1212"}})
	numbers := map[string]string{
		CodeInvalidNumber:        us555,
		CodeCountryNotAllowed:    gbMobile,
		CodeNumberTypeNotAllowed: usPremium,
		CodePrefixDenied:         usNewYork,
	}
	for code, number := range numbers {
		t.Run(code, func(t *testing.T) {
			_, err := p.Check(number)
			if !errors.Is(err, ErrRefused) {
				t.Errorf("errors.Is(%v, ErrRefused) = false", err)
			}
			for c, sentinel := range sentinels {
				if got, want := errors.Is(err, sentinel), c == code; got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", err, sentinel, got, want)
				}
			}
			if errors.Is(err, ErrInvalidConfig) {
				t.Errorf("a refusal matches ErrInvalidConfig")
			}
			if !strings.HasPrefix(err.Error(), "policy: "+code+" (") {
				t.Errorf("Error() = %q, want it to start with the code", err)
			}
		})
	}
}

func TestRefusalErrorText(t *testing.T) {
	r := &Refusal{Code: CodeCountryNotAllowed, Rule: RuleCountries, Reason: "numbers in GB may not be called"}
	if got, want := r.Error(), "policy: country_not_allowed (countries): numbers in GB may not be called"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if errors.Is(&Refusal{Code: "other"}, ErrInvalidNumber) || !errors.Is(&Refusal{Code: "other"}, ErrRefused) {
		t.Error("a refusal with an unknown code must match ErrRefused only")
	}
}

func TestDenyReason(t *testing.T) {
	tests := []struct {
		name, number string
		deny         []string
		want         string
	}{
		{"short prefix is named", usFixedOrMobile, []string{"+1201"}, "the number is under the denied prefix +1201"},
		{"prefix longer than the masked head is not", usFixedOrMobile, []string{"+12015"}, "the number is under a denied prefix"},
		{"whole number is not", usFixedOrMobile, []string{usFixedOrMobile}, "the number is under a denied prefix"},
		{"short number shows less", nuFixed, []string{"+683"}, "the number is under a denied prefix"},
		{"short number, short prefix", nuFixed, []string{"+68"}, "the number is under the denied prefix +68"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, Config{DenyPrefixes: tt.deny})
			_, err := p.Check(tt.number)
			var r *Refusal
			if !errors.As(err, &r) || r.Code != CodePrefixDenied {
				t.Fatalf("Check = %v, want prefix_denied", err)
			}
			if r.Reason != tt.want {
				t.Errorf("Reason = %q, want %q", r.Reason, tt.want)
			}
			checkReason(t, tt.number, r)
		})
	}
}

// checkReason fails if the refusal shows more of number than MaskNumber does: every run of digits in
// its text must be part of the head or the tail that the mask keeps.
func checkReason(t testing.TB, number string, r *Refusal) {
	t.Helper()
	visible := strings.FieldsFunc(strings.TrimPrefix(MaskNumber(number), "+"), func(c rune) bool { return c == '*' })
	for _, text := range []string{r.Reason, r.Error()} {
		for _, run := range strings.FieldsFunc(text, func(c rune) bool { return c < '0' || c > '9' }) {
			shown := false
			for _, v := range visible {
				shown = shown || strings.Contains(v, run)
			}
			if !shown {
				t.Errorf("refusal %q of %s shows %q, more than MaskNumber's %s", text, MaskNumber(number), run, MaskNumber(number))
			}
		}
		if len(number) > 4 && strings.Contains(text, number) {
			t.Errorf("refusal %q repeats the number", text)
		}
	}
	if r.Code == "" || r.Rule == "" || r.Reason == "" {
		t.Errorf("incomplete refusal %+v", r)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error, in order; nil if valid
	}{
		{name: "zero", cfg: Config{}},
		{name: "all fields", cfg: Config{Countries: []string{"US", "GB", "GG", "XK"}, NumberTypes: NumberTypeNames(),
			DenyPrefixes: []string{"+1900", "+123456789012345"}, AllowPrefixes: []string{"+8823", "+1900"}}},
		{name: "all countries", cfg: Config{AllowAllCountries: true}},
		{name: "unknown country", cfg: Config{Countries: []string{"US", "ZZ"}},
			want: []string{`policy.countries: "ZZ" is not an ISO 3166-1 alpha-2 region`}},
		{name: "lower case country", cfg: Config{Countries: []string{"us"}},
			want: []string{`policy.countries: "us" must be upper case ("US")`}},
		{name: "non-geographic region", cfg: Config{Countries: []string{"001"}},
			want: []string{`policy.countries: "001" is not a country`}},
		{name: "alpha-3", cfg: Config{Countries: []string{"USA"}}, want: []string{`policy.countries: "USA"`}},
		{name: "empty country", cfg: Config{Countries: []string{""}}, want: []string{`policy.countries: ""`}},
		{name: "duplicate country", cfg: Config{Countries: []string{"US", "GB", "US"}},
			want: []string{`policy.countries: "US" is listed twice`}},
		{name: "all countries and a list", cfg: Config{AllowAllCountries: true, Countries: []string{"US"}},
			want: []string{"policy.allow_all_countries: set together with policy.countries"}},
		{name: "unknown type", cfg: Config{NumberTypes: []string{"mobile", "landline"}},
			want: []string{`policy.number_types: "landline" is not a number type (one of fixed_line, mobile,`}},
		{name: "upper-case type", cfg: Config{NumberTypes: []string{"MOBILE"}},
			want: []string{`policy.number_types: "MOBILE" is not a number type`}},
		{name: "duplicate type", cfg: Config{NumberTypes: []string{"mobile", "mobile"}},
			want: []string{`policy.number_types: "mobile" is listed twice`}},
		{name: "prefix without plus", cfg: Config{DenyPrefixes: []string{"1900"}},
			want: []string{`policy.deny_prefixes: "1900" is not '+' followed by 1 to 15 digits`}},
		{name: "plus only", cfg: Config{AllowPrefixes: []string{"+"}}, want: []string{`policy.allow_prefixes: "+"`}},
		{name: "prefix with space", cfg: Config{AllowPrefixes: []string{"+44 7"}}, want: []string{`policy.allow_prefixes: "+44 7"`}},
		{name: "prefix of 16 digits", cfg: Config{DenyPrefixes: []string{"+1234567890123456"}},
			want: []string{`policy.deny_prefixes: "+1234567890123456"`}},
		{name: "prefix starting with 0", cfg: Config{DenyPrefixes: []string{"+0"}}, want: []string{`policy.deny_prefixes: "+0"`}},
		{name: "duplicate prefix", cfg: Config{AllowPrefixes: []string{"+44", "+44"}},
			want: []string{`policy.allow_prefixes: "+44" is listed twice`}},
		{name: "every problem is reported",
			cfg:  Config{Countries: []string{"XX"}, NumberTypes: []string{"fax"}, DenyPrefixes: []string{"x"}, AllowPrefixes: []string{"y"}},
			want: []string{"policy.countries:", "policy.number_types:", "policy.deny_prefixes:", "policy.allow_prefixes:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.cfg)
			if tt.want == nil {
				if err != nil || p == nil {
					t.Fatalf("New = %v, %v; want a policy", p, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want an error containing %q", tt.want)
			}
			if p != nil {
				t.Errorf("New returned a policy with its error")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("errors.Is(%v, ErrInvalidConfig) = false", err)
			}
			if errors.Is(err, ErrRefused) {
				t.Errorf("a config error matches ErrRefused")
			}
			rest := err.Error()
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error %q does not contain %q (in order)", err, w)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestNewKeepsNoReferenceToConfig(t *testing.T) {
	cfg := Config{Countries: []string{"US"}, NumberTypes: []string{TypeMobile}, DenyPrefixes: []string{"+1900"}}
	p := mustNew(t, cfg)
	cfg.Countries[0], cfg.NumberTypes[0], cfg.DenyPrefixes[0] = "GB", TypePremiumRate, "+44"
	if _, err := p.Check(usPremium); !errors.Is(err, ErrPrefixDenied) {
		t.Errorf("Check after changing cfg = %v, want prefix_denied", err)
	}
	if _, err := p.Check(gbMobile); !errors.Is(err, ErrCountryNotAllowed) {
		t.Errorf("Check after changing cfg = %v, want country_not_allowed", err)
	}
}

func TestAllowsAll(t *testing.T) {
	tests := []struct {
		cfg  Config
		want bool
	}{
		{Config{}, false},
		{Config{Countries: []string{"US"}}, false},
		{Config{AllowAllCountries: true}, true},
		{Config{AllowAllCountries: true, DenyPrefixes: []string{"+1900"}}, true},
	}
	for _, tt := range tests {
		if got := mustNew(t, tt.cfg).AllowsAll(); got != tt.want {
			t.Errorf("AllowsAll(%+v) = %v, want %v", tt.cfg, got, tt.want)
		}
	}
}

func TestNumberTypeNames(t *testing.T) {
	names := NumberTypeNames()
	if len(names) != 12 {
		t.Fatalf("NumberTypeNames() has %d names, want 12", len(names))
	}
	names[0] = "changed"
	if NumberTypeNames()[0] == "changed" {
		t.Error("NumberTypeNames returns the package's own slice")
	}
	if _, err := New(Config{NumberTypes: NumberTypeNames()}); err != nil {
		t.Errorf("New with every type name: %v", err)
	}
	if _, err := New(Config{NumberTypes: DefaultNumberTypes()}); err != nil {
		t.Errorf("New with the default type names: %v", err)
	}
}

// TestCheckConcurrent runs Check from many goroutines, for the race detector.
func TestCheckConcurrent(t *testing.T) {
	p := mustNew(t, Config{Countries: []string{"US", "GB", "FR"}, AllowPrefixes: []string{"+8823"}, DenyPrefixes: []string{"+1900"}})
	numbers := []string{usFixedOrMobile, gbMobile, frMobile, usPremium, intlNetwork882, us555, "+49301234567"}
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 200 {
				p.Check(numbers[(g+i)%len(numbers)])
			}
		}()
	}
	for range 8 {
		<-done
	}
}

// FuzzCheck: Check never panics, answers with a Destination or a complete *Refusal, and never shows
// more of the number than MaskNumber. It also holds libphonenumber to the equivalence Check relies on:
// a number is valid exactly when its type is known.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{usFixedOrMobile, usPremium, us555, gbMobile, gbPersonal, gbDrama, nuFixed, acShort,
		intlNetwork882, intlNetwork883, inmarsat870, iridium881, intlPremium979, intlFreephone, unassigned999,
		invalid882, tooLong, "", "+", "+0", "+1", "+44", "+447", "tel:+12015550123", "+1 201 555 0123", "+１２", "+1201555012३"} {
		f.Add(s)
	}
	p := mustNew(f, Config{Countries: []string{"US", "GB", "FR"}, DenyPrefixes: []string{"+1900", "+4470", "+33612345678"},
		AllowPrefixes: []string{"+8823", "+1900555"}})
	codes := map[string][]string{
		CodeInvalidNumber:        {RuleFormat, RuleUnassignedCallingCode, RuleInvalidForRegion},
		CodeCountryNotAllowed:    {RuleCountries, RuleNonGeographic},
		CodeNumberTypeNotAllowed: {RuleNumberTypes},
		CodePrefixDenied:         {RuleDenyPrefix},
	}
	f.Fuzz(func(t *testing.T, number string) {
		d, err := p.Check(number)
		if d.Number != number {
			t.Fatalf("Destination.Number = %q, want %q", d.Number, number)
		}
		if err == nil {
			if d.Type == "" || d.CountryCode == 0 || !validPrefix(number) {
				t.Fatalf("allowed %q with an incomplete destination %+v", number, d)
			}
		} else {
			var r *Refusal
			if !errors.As(err, &r) {
				t.Fatalf("Check(%q) error %v is not a *Refusal", number, err)
			}
			rules, ok := codes[r.Code]
			if !ok || !contains(rules, r.Rule) {
				t.Fatalf("Check(%q): unknown code/rule %s/%s", number, r.Code, r.Rule)
			}
			checkReason(t, number, r)
		}
		if validPrefix(number) {
			if n, err := phonenumbers.Parse(number, ""); err == nil {
				valid, typ := phonenumbers.IsValidNumber(n), phonenumbers.GetNumberType(n)
				if valid != (typ != phonenumbers.UNKNOWN) {
					t.Fatalf("%s: IsValidNumber = %v but GetNumberType = %v", number, valid, typ)
				}
			}
		}
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// benchNumbers is a mix of what a server sees: mostly valid numbers of allowed countries, some refused
// at each rule.
var benchNumbers = []string{
	usFixedOrMobile, usNewYork, gbMobile, gbFixed, frMobile, "+4915123456789",
	usPremium, gbPersonal, intlNetwork882, us555, unassigned999, "+12345",
}

func BenchmarkCheck(b *testing.B) {
	p := mustNew(b, Config{Countries: []string{"US", "GB", "FR", "DE"}, DenyPrefixes: []string{"+4470", "+1900"},
		AllowPrefixes: []string{"+1201555"}})
	for _, n := range benchNumbers { // warm libphonenumber's pattern cache for every region in the mix
		p.Check(n)
	}
	b.Run("mix", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			p.Check(benchNumbers[i%len(benchNumbers)])
			i++
		}
	})
	for _, tt := range []struct{ name, number string }{
		{"US", usNewYork}, {"GB_mobile", gbMobile}, {"premium_refused", usPremium},
		{"non_geographic_refused", intlNetwork882}, {"invalid", us555}, {"format", "+12345x"},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Check(tt.number)
			}
		})
	}
}

func BenchmarkCheckParallel(b *testing.B) {
	p := mustNew(b, Config{Countries: []string{"US", "GB", "FR", "DE"}, DenyPrefixes: []string{"+4470", "+1900"}})
	for _, n := range benchNumbers {
		p.Check(n)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			p.Check(benchNumbers[i%len(benchNumbers)])
			i++
		}
	})
}

func BenchmarkNew(b *testing.B) {
	cfg := Config{Countries: []string{"US", "GB", "FR", "DE"}, DenyPrefixes: []string{"+4470", "+1900"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

func TestZeroPolicyRefuses(t *testing.T) {
	var p Policy
	for _, n := range []string{usFixedOrMobile, gbMobile, intlNetwork882} {
		if _, err := p.Check(n); !errors.Is(err, ErrCountryNotAllowed) {
			t.Errorf("zero Policy: Check(%s) = %v, want country_not_allowed", n, err)
		}
	}
}

// An operator's allow prefix accepts numbers libphonenumber does not know (a test range), and a deny
// prefix refuses them before their validity is even looked at.
func TestPrefixesDecideBeforeValidity(t *testing.T) {
	p, err := New(Config{Countries: []string{"US"}, AllowPrefixes: []string{"+1555"}, DenyPrefixes: []string{"+1555999"}})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := p.Check("+15551234567"); err != nil || d.CountryCode != 1 || d.Type != TypeUnknown {
		t.Errorf("allowed test range: %+v, %v; want accepted, type unknown", d, err)
	}
	var r *Refusal
	if _, err := p.Check("+15559991234"); !errors.As(err, &r) || r.Code != CodePrefixDenied {
		t.Errorf("denied inside the allowed range: %v, want prefix_denied", err)
	}
	if _, err := p.Check("+19995551234"); !errors.As(err, &r) || r.Code != CodeInvalidNumber {
		t.Errorf("outside the allowed range: %v, want invalid_number", err)
	}
}
