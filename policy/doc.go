// Package policy decides who may be called: given an E.164 number it answers, in microseconds and with
// no I/O, whether the number is a valid destination in an allowed country, of an allowed number type
// and not under a denied prefix, before anything about the request is stored or queued.
//
// It owns:
//
//   - The destination rules and their configuration ([Config], validated by [New]): the countries that
//     may be called (ISO 3166-1 alpha-2 regions), the number types (libphonenumber's classification:
//     mobile, fixed_line, premium_rate, ...), and operators' deny and allow prefix lists with a
//     longest-match rule.
//   - The verdict: [Policy.Check] returns the [Destination] (region, calling code and type) or a
//     [*Refusal] carrying an API error code ([CodeInvalidNumber], [CodeCountryNotAllowed],
//     [CodeNumberTypeNotAllowed], [CodePrefixDenied]), the rule that refused for the audit log, and a
//     sentence that never repeats the number. errors.Is matches [ErrRefused] and one sentinel per code.
//   - [MaskNumber], the one way a number is shortened for logs and audit lines.
//
// It does not own how often a number may be called (velocity windows, spend caps and the conversion
// guard are separate decisions over counters), the counters themselves, HTTP status codes, logging,
// or the call. It imports no other package of this project.
//
// # Numbering data
//
// Numbers are parsed and classified with github.com/nyaruka/phonenumbers, a port of Google's
// libphonenumber; its metadata decides what "valid", a region and a type mean, and it changes with
// the library's version (new ranges become valid, types move). Notable consequences:
//
//   - Numbers in ranges reserved for fiction or never assigned are invalid: +1 555 (not an assigned
//     area code, so the familiar +1 555 123 4567 is refused), +44 7700 900xxx, NANP area codes that
//     do not exist (+1 123 ...). Tests and demos need real-looking numbers such as +1 201 555 0123.
//   - Calling codes that belong to no country (+800, +808, +870, +878, +881, +882, +883, +888, +979)
//     are non-geographic: their [Destination.Country] is "" and they are refused unless an allow prefix
//     covers them, however Countries and AllowAllCountries are set. Satellite phones (+870 Inmarsat,
//     +881 Iridium and Globalstar) are mobile, +882/+883 international networks are mostly voip, +979
//     is premium_rate.
//   - +1 900 is premium_rate, +44 70 is personal_number, +1 800 and +44 800 are toll_free.
//
// Cost: importing the library costs about 5 ms of CPU and 2.5 MB of allocations at program start
// (its init decodes the embedded metadata). A Check of a valid number takes 10 to 25 µs and about
// 40 to 100 small allocations, almost all of it libphonenumber's parsing and regular expressions; a
// number that is not E.164 is refused in well under a microsecond. libphonenumber compiles each
// pattern the first time it is used and keeps it for the life of the process: [New] compiles those
// of the configured countries (a few milliseconds, once), and with AllowAllCountries the first
// number of each other region costs about 0.1 ms more, once per process.
//
// Concurrency: a [Policy] is immutable after [New] and safe for concurrent use by any number of
// goroutines.
package policy
