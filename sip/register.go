package sip

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// registration is one binding kept at a trunk's registrar (RFC 3261 §10.2):
// every REGISTER of it shares one Call-ID and From tag, with CSeq
// increasing (§10.2.4).
type registration struct {
	tr      *trunk
	callID  string
	fromTag string
	asked   time.Duration // expiry asked for; raised by a 423 (§10.2.8)

	mu    sync.Mutex // guards cseq, until
	cseq  uint32
	until time.Time // end of the registration the registrar granted; zero if none
}

func (t *Trunks) newRegistration(tr *trunk) *registration {
	asked := tr.cfg.RegisterExpiry
	if asked == 0 {
		asked = DefaultRegisterExpiry
	}
	return &registration{tr: tr, callID: randToken(), fromTag: randToken(), asked: asked}
}

func (r *registration) nextCSeq() uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cseq++
	return r.cseq
}

func (r *registration) setCSeq(n uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cseq = max(r.cseq, n)
}

func (r *registration) registered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.until.IsZero()
}

// aor is the address-of-record a trunk registers (RFC 3261 §10.2):
// sip:Username@FromDomain, the trunk host when FromDomain is empty.
func (o *outbound) aor() sip.Uri {
	return sip.Uri{Scheme: "sip", User: o.creds.username, Host: o.fromDomain}
}

// trunkURI is the URI of the trunk itself, without user part: the
// Request-URI of REGISTER (§10.2) and OPTIONS.
func (o *outbound) trunkURI() sip.Uri {
	u := sip.Uri{Scheme: "sip", Host: o.trunk.Host, Port: o.trunk.Port, UriParams: sip.NewParams()}
	if t := o.trunk.Transport.orUDP(); t != TransportUDP {
		u.UriParams.Add("transport", string(t))
	}
	return u
}

// newRequest builds an out-of-dialog request to o (RFC 3261 §8.1.1) with
// the outbound proxy's Route; Via and the Contact's port and transport are
// set by prepare.
func (ua *UA) newRequest(method sip.RequestMethod, o *outbound, from, to sip.Uri, fromTag, callID string, cseq uint32, contactUser string) *sip.Request {
	req := sip.NewRequest(method, o.trunkURI())
	if rt := o.route(); rt != nil {
		req.AppendHeader(rt)
	}
	fh := &sip.FromHeader{Address: from, Params: sip.NewParams()}
	fh.Params.Add("tag", fromTag)
	cid := sip.CallIDHeader(callID)
	maxfwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&maxfwd)
	req.AppendHeader(fh)
	req.AppendHeader(&sip.ToHeader{Address: to, Params: sip.NewParams()})
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: method})
	contact := ua.contact.Clone()
	contact.Address.User = contactUser
	req.AppendHeader(contact)
	req.AppendHeader(sip.NewHeader("User-Agent", ua.cfg.UserAgent))
	req.SetBody(nil)
	return req
}

// requestAuth sends req to o's next hop and returns its final response,
// answering one 401/407 challenge with o's credentials (and a second if the
// first nonce went stale), each in a new transaction with CSeq+1
// (RFC 3261 §22.2). last is the request that got the response. Errors are
// local (transport, no response before ctx ends) and are *Error with Kind
// ErrUnreachable.
func (ua *UA) requestAuth(ctx context.Context, req *sip.Request, o *outbound) (res *sip.Response, last *sip.Request, err error) {
	for try := 0; ; try++ {
		if err := ua.prepare(ctx, req, o.fallback(), o.tls); err != nil {
			return nil, req, &Error{Kind: ErrUnreachable, Reason: "transport error", cause: err}
		}
		res, err := ua.cli.Do(ctx, req, ua.finish)
		if err != nil {
			return nil, req, &Error{Kind: ErrUnreachable, Reason: "no response", cause: err}
		}
		challenged := res.StatusCode == 401 || res.StatusCode == 407
		if !challenged || o.creds.username == "" || try >= 2 || (try == 1 && !staleChallenge(res)) {
			return res, req, nil
		}
		next := req.Clone()
		if err := o.creds.authorize(next, res); err != nil {
			return res, req, nil
		}
		next.CSeq().SeqNo++
		next.RemoveHeader("Via")
		req = next
	}
}

// options sends one OPTIONS to o (RFC 3261 §11) and returns the final
// status and the round-trip time from sending to the final response.
func (ua *UA) options(ctx context.Context, o *outbound) (int, time.Duration, error) {
	to := o.trunkURI()
	to.UriParams = nil
	from := sip.Uri{Scheme: "sip", User: o.fromUser, Host: o.fromDomain}
	req := ua.newRequest(sip.OPTIONS, o, from, to, randToken(), randToken(), 1, o.fromUser)
	req.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	if err := ua.prepare(ctx, req, o.fallback(), o.tls); err != nil {
		return 0, 0, &Error{Kind: ErrUnreachable, Reason: "transport error", cause: err}
	}
	start := time.Now()
	res, err := ua.cli.Do(ctx, req, ua.finish)
	if err != nil {
		return 0, 0, &Error{Kind: ErrUnreachable, Reason: "no response", cause: err}
	}
	return res.StatusCode, time.Since(start), nil
}

// registerRequest builds the next REGISTER of r asking for expiry (0
// removes the binding, §10.2.2): Contact with an expires parameter, and an
// Expires header.
func (t *Trunks) registerRequest(r *registration, expiry time.Duration) *sip.Request {
	o := r.tr.out
	aor := o.aor()
	req := t.ua.newRequest(sip.REGISTER, o, aor, aor, r.fromTag, r.callID, r.nextCSeq(), o.creds.username)
	secs := strconv.Itoa(int(expiry / time.Second))
	c := req.Contact()
	c.Params = sip.NewParams()
	c.Params.Add("expires", secs)
	req.AppendHeader(sip.NewHeader("Expires", secs))
	return req
}

// register sends one REGISTER (after a 423 Interval Too Brief, a second
// with the registrar's Min-Expires, §10.2.8) and records the outcome.
func (t *Trunks) register(ctx context.Context, r *registration) (time.Duration, error) {
	defer t.notify()
	tr := r.tr
	for try := 0; ; try++ {
		req := t.registerRequest(r, r.asked)
		res, last, err := t.ua.requestAuth(ctx, req, tr.out)
		r.setCSeq(last.CSeq().SeqNo)
		if err == nil && res.StatusCode == 423 && try == 0 {
			if h := res.GetHeader("Min-Expires"); h != nil {
				if n, perr := strconv.Atoi(h.Value()); perr == nil && n > 0 && n <= 86400 {
					r.asked = time.Duration(n) * time.Second
					continue
				}
			}
		}
		if err == nil && !res.IsSuccess() {
			err = &Error{Status: res.StatusCode, Reason: res.Reason, Kind: KindForStatus(res.StatusCode)}
		}
		now := t.now()
		t.mu.Lock()
		if res != nil {
			tr.lastStatus = res.StatusCode
		}
		if err != nil {
			tr.regErr = err.Error()
			t.mu.Unlock()
			t.log.Warn("sip: registration failed", "trunk", tr.cfg.Name, "error", err)
			return 0, err
		}
		granted := grantedExpiry(res, last, r.asked)
		tr.registered, tr.regExpires, tr.regErr = true, now.Add(granted), ""
		t.mu.Unlock()
		r.mu.Lock()
		r.until = now.Add(granted)
		r.mu.Unlock()
		t.log.Info("sip: registered", "trunk", tr.cfg.Name, "expires", granted)
		return granted, nil
	}
}

// grantedExpiry is the expiry the registrar granted our binding in a 2xx to
// REGISTER (§10.2.4): the expires parameter of our Contact among those
// returned, else the Expires header, else what we asked for.
func grantedExpiry(res *sip.Response, req *sip.Request, asked time.Duration) time.Duration {
	ours := req.Contact()
	for _, h := range res.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok || ours == nil || c.Address.Host != ours.Address.Host || c.Address.Port != ours.Address.Port || c.Address.User != ours.Address.User {
			continue
		}
		if v, ok := c.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(h.Value()); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return asked
}

// registerLoop keeps r registered until ctx ends: refresh at 80% of the
// granted expiry; after a failure retry with exponential backoff.
func (t *Trunks) registerLoop(ctx context.Context, r *registration) {
	backoff := t.retryMin
	for {
		rctx, cancel := context.WithTimeout(ctx, probeTimeout)
		granted, err := t.register(rctx, r)
		cancel()
		wait := granted * 4 / 5
		if err != nil {
			wait = backoff
			backoff = min(2*backoff, regRetryMax)
		} else {
			backoff = t.retryMin
		}
		timer := time.NewTimer(max(wait, 100*time.Millisecond))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// unregister removes r's binding (REGISTER with Expires: 0, §10.2.2) if it
// holds one, waiting for the answer until ctx ends.
func (t *Trunks) unregister(ctx context.Context, r *registration) {
	if !r.registered() {
		return
	}
	defer t.notify()
	tr := r.tr
	req := t.registerRequest(r, 0)
	res, last, err := t.ua.requestAuth(ctx, req, tr.out)
	r.setCSeq(last.CSeq().SeqNo)
	if err == nil && !res.IsSuccess() {
		err = &Error{Status: res.StatusCode, Reason: res.Reason, Kind: KindForStatus(res.StatusCode)}
	}
	r.mu.Lock()
	r.until = time.Time{}
	r.mu.Unlock()
	t.mu.Lock()
	tr.registered, tr.regExpires = false, time.Time{}
	if res != nil {
		tr.lastStatus = res.StatusCode
	}
	if err != nil {
		tr.regErr = fmt.Sprintf("un-register: %v", err)
	}
	t.mu.Unlock()
	if err != nil {
		t.log.Warn("sip: un-registration failed", "trunk", tr.cfg.Name, "error", err)
		return
	}
	t.log.Info("sip: un-registered", "trunk", tr.cfg.Name)
}
