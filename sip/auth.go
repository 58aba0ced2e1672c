package sip

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// authorize adds to req the credentials answering the 401 or 407 challenge
// in res (RFC 3261 §22.2 and §22.3, digest per RFC 2617 and RFC 8760 with
// MD5 or SHA-256, qop=auth): an Authorization header for a 401's
// WWW-Authenticate, a Proxy-Authorization header for a 407's
// Proxy-Authenticate. When the response carries several challenges, the
// first one for our realm (any realm if cr.realm is empty) with an
// algorithm we support is answered. The caller increments CSeq and sends
// req in a new transaction. The error never contains the password.
func (cr credentials) authorize(req *sip.Request, res *sip.Response) error {
	challenge, header := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		challenge, header = "Proxy-Authenticate", "Proxy-Authorization"
	}
	hs := res.GetHeaders(challenge)
	if len(hs) == 0 {
		return fmt.Errorf("sip: %d without %s", res.StatusCode, challenge)
	}
	var realms []string
	for _, h := range hs {
		chal, err := digest.ParseChallenge(h.Value())
		if err != nil {
			continue
		}
		chal.Algorithm = strings.ToUpper(chal.Algorithm)
		realms = append(realms, chal.Realm)
		if cr.realm != "" && chal.Realm != cr.realm {
			continue
		}
		if !digest.CanDigest(chal) || (len(chal.QOP) > 0 && !chal.SupportsQOP("auth")) {
			continue
		}
		cred, err := digest.Digest(chal, digest.Options{
			Method:   string(req.Method),
			URI:      req.Recipient.Addr(),
			Username: cr.username,
			Password: cr.password,
			Count:    1,
		})
		if err != nil {
			continue
		}
		req.RemoveHeader(header)
		req.AppendHeader(sip.NewHeader(header, cred.String()))
		return nil
	}
	if cr.realm != "" {
		return fmt.Errorf("sip: no usable digest challenge for realm %q (offered %q)", cr.realm, realms)
	}
	return errors.New("sip: no usable digest challenge (MD5 or SHA-256 with qop auth)")
}

// staleChallenge reports whether a 401/407 says our credentials were right
// but the nonce had expired (stale=true, RFC 2617 §3.2.1): worth one more
// try with the new nonce.
func staleChallenge(res *sip.Response) bool {
	name := "WWW-Authenticate"
	if res.StatusCode == 407 {
		name = "Proxy-Authenticate"
	}
	for _, h := range res.GetHeaders(name) {
		if chal, err := digest.ParseChallenge(h.Value()); err == nil && chal.Stale {
			return true
		}
	}
	return false
}
