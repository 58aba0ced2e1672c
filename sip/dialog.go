package sip

import (
	"crypto/tls"

	"github.com/emiago/sipgo/sip"
)

// dialogKey identifies a dialog from the UAC side (RFC 3261 §12): Call-ID,
// our tag (From of our INVITE) and the remote tag (To of its 2xx).
type dialogKey struct {
	callID, localTag, remoteTag string
}

// dialogKeyUAC returns the key of the dialog an incoming request belongs to,
// where we were the UAC: the request's To tag is ours and its From tag theirs.
func dialogKeyUAC(req *sip.Request) (dialogKey, bool) {
	callID, from, to := req.CallID(), req.From(), req.To()
	if callID == nil || from == nil || to == nil {
		return dialogKey{}, false
	}
	local, _ := to.Params.Get("tag")
	remote, _ := from.Params.Get("tag")
	if local == "" {
		return dialogKey{}, false
	}
	return dialogKey{callID: callID.Value(), localTag: local, remoteTag: remote}, true
}

// dialog is the UAC state of an established dialog (RFC 3261 §12.1.2): it
// builds the ACK and later in-dialog requests. It is immutable after
// newDialog; the local CSeq lives in the owner.
type dialog struct {
	key        dialogKey
	callID     string
	from       *sip.FromHeader
	to         *sip.ToHeader
	target     sip.Uri            // remote target: Contact of the 2xx
	routes     []*sip.RouteHeader // route set: Record-Route of the 2xx, reversed
	inviteCSeq uint32
	transport  Transport   // of the INVITE: for a route or target URI without a transport parameter
	tls        *tls.Config // for a TLS hop; nil verifies against the system roots
}

// newDialog builds the dialog state from our INVITE and the 2xx that
// established it (RFC 3261 §12.1.2). A 2xx without Contact (a broken peer)
// falls back to the Request-URI as remote target.
func newDialog(inv *sip.Request, res *sip.Response) *dialog {
	d := &dialog{
		callID:     inv.CallID().Value(),
		from:       cloneFrom(inv.From()),
		inviteCSeq: inv.CSeq().SeqNo,
		target:     *inv.Recipient.Clone(),
	}
	if to := res.To(); to != nil {
		d.to = cloneTo(to)
	} else {
		d.to = cloneTo(inv.To())
	}
	if c := res.Contact(); c != nil && (c.Address.Scheme == "sip" || c.Address.Scheme == "") && c.Address.Host != "" {
		d.target = *c.Address.Clone()
		d.target.Scheme = "sip"
	}
	rr := res.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		if h, ok := rr[i].(*sip.RecordRouteHeader); ok {
			d.routes = append(d.routes, &sip.RouteHeader{Address: *h.Address.Clone()})
		}
	}
	local, _ := d.from.Params.Get("tag")
	remote, _ := d.to.Params.Get("tag")
	d.key = dialogKey{callID: d.callID, localTag: local, remoteTag: remote}
	return d
}

// request builds an in-dialog request (RFC 3261 §12.2.1.1). With a loose
// route set (lr) the Request-URI is the remote target and the routes go in
// Route; with a strict first route, the Request-URI is that route and the
// remote target is appended as the last Route.
func (d *dialog) request(ua *UA, method sip.RequestMethod, cseq uint32) *sip.Request {
	ruri := d.target
	routes := d.routes
	if len(routes) > 0 && !routes[0].Address.UriParams.Has("lr") {
		ruri = routes[0].Address
		routes = append(append([]*sip.RouteHeader{}, routes[1:]...), &sip.RouteHeader{Address: d.target})
	}
	req := sip.NewRequest(method, *ruri.Clone())
	for _, r := range routes {
		req.AppendHeader(r.Clone())
	}
	maxfwd := sip.MaxForwardsHeader(70)
	callID := sip.CallIDHeader(d.callID)
	req.AppendHeader(&maxfwd)
	req.AppendHeader(cloneFrom(d.from))
	req.AppendHeader(cloneTo(d.to))
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: method})
	req.AppendHeader(ua.contact.Clone())
	req.AppendHeader(sip.NewHeader("User-Agent", ua.cfg.UserAgent))
	req.SetBody(nil)
	return req
}

// ack builds the ACK for the 2xx (RFC 3261 §13.2.2.4): same CSeq number as
// the INVITE, method ACK, a new branch, no body (the offer was in the INVITE).
func (d *dialog) ack(ua *UA) *sip.Request {
	return d.request(ua, sip.ACK, d.inviteCSeq)
}

func cloneFrom(h *sip.FromHeader) *sip.FromHeader { return sip.HeaderClone(h).(*sip.FromHeader) }

func cloneTo(h *sip.ToHeader) *sip.ToHeader { return sip.HeaderClone(h).(*sip.ToHeader) }
