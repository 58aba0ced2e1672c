package policy_test

import (
	"errors"
	"fmt"

	"github.com/voiceotp/voiceotp/policy"
)

func Example() {
	p, err := policy.New(policy.Config{
		Countries:     []string{"US", "GB"},
		DenyPrefixes:  []string{"+1212"},
		AllowPrefixes: []string{"+8823"}, // an operator's exception: one international network
	})
	if err != nil {
		panic(err)
	}
	for _, number := range []string{
		"+12015550123",   // US
		"+447400123456",  // GB mobile
		"+19005551234",   // US premium rate
		"+33612345678",   // FR
		"+8823123456789", // international network, allowed by prefix
		"+870773111632",  // Inmarsat
		"+12125551234",   // denied prefix
		"+15551234567",   // +1 555: not a valid number
	} {
		d, err := p.Check(number)
		var r *policy.Refusal
		switch {
		case errors.As(err, &r):
			fmt.Printf("%s refused: %s (%s)\n", policy.MaskNumber(number), r.Code, r.Rule)
		case err == nil:
			fmt.Printf("%s allowed: %q %s +%d\n", policy.MaskNumber(number), d.Country, d.Type, d.CountryCode)
		}
	}
	// Output:
	// +1201***0123 allowed: "US" fixed_line_or_mobile +1
	// +4474****3456 allowed: "GB" mobile +44
	// +1900***1234 refused: number_type_not_allowed (number_types)
	// +3361***5678 refused: country_not_allowed (countries)
	// +8823*****6789 allowed: "" voip +882
	// +8707****1632 refused: country_not_allowed (non_geographic)
	// +1212***1234 refused: prefix_denied (deny_prefix)
	// +1555***4567 refused: invalid_number (invalid_for_region)
}

func ExampleNew() {
	_, err := policy.New(policy.Config{
		Countries:    []string{"US", "us"},
		NumberTypes:  []string{"mobile", "landline"},
		DenyPrefixes: []string{"1900"},
	})
	fmt.Println(errors.Is(err, policy.ErrInvalidConfig))
	fmt.Println(err)
	// Output:
	// true
	// policy.countries: "us" must be upper case ("US")
	// policy.number_types: "landline" is not a number type (one of fixed_line, mobile, fixed_line_or_mobile, toll_free, premium_rate, shared_cost, voip, personal_number, pager, uan, voicemail, unknown)
	// policy.deny_prefixes: "1900" is not '+' followed by 1 to 15 digits, the first not 0
}

func ExamplePolicy_Check() {
	p, err := policy.New(policy.Config{Countries: []string{"US"}})
	if err != nil {
		panic(err)
	}
	_, err = p.Check("+19005551234")
	fmt.Println(errors.Is(err, policy.ErrRefused), errors.Is(err, policy.ErrNumberTypeNotAllowed))
	fmt.Println(err)
	// Output:
	// true true
	// policy: number_type_not_allowed (number_types): premium_rate numbers may not be called
}

func ExampleMaskNumber() {
	fmt.Println(policy.MaskNumber("+15551234567"))
	fmt.Println(policy.MaskNumber("+6834002"))
	fmt.Println(policy.MaskNumber("not a number"))
	// Output:
	// +1555***4567
	// +68****2
	// ***
}
