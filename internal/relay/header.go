package relay

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"
)

// hopHeaders are meaningful for one connection only and never relayed
// (RFC 9110 section 7.6.1); every Proxy-* header is dropped too.
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// RemoveHopByHop deletes the hop-by-hop headers from h: the fixed list,
// every Proxy-* header, and every header named in Connection.
func RemoveHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
	for name := range h {
		if hasPrefixFold(name, "proxy-") {
			delete(h, name)
		}
	}
}

// hasPrefixFold reports whether s starts with prefix, ignoring case
// (without the allocation of strings.ToLower).
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// TrustedProxies is the set of peers whose forwarding headers
// (X-Forwarded-*, Forwarded, X-Real-Ip) the relay keeps. A nil set trusts
// no one.
type TrustedProxies struct {
	prefixes []netip.Prefix
}

// ParseTrustedProxies parses IP addresses ("10.0.0.7", "::1") and CIDR
// prefixes ("10.0.0.0/8"). An empty list gives nil: trust no one.
func ParseTrustedProxies(list []string) (*TrustedProxies, error) {
	if len(list) == 0 {
		return nil, nil
	}
	t := &TrustedProxies{}
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			t.prefixes = append(t.prefixes, p.Masked())
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("relay: trusted proxy %q is not an IP address or CIDR prefix", s)
		}
		ip = ip.Unmap().WithZone("")
		t.prefixes = append(t.prefixes, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return t, nil
}

// Trusts reports whether remoteAddr (host:port, as in
// http.Request.RemoteAddr, or a bare IP) is a trusted proxy.
func (t *TrustedProxies) Trusts(remoteAddr string) bool {
	if t == nil {
		return false
	}
	host := remoteAddr
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range t.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

type trustedKey struct{}

// WithTrustedProxies returns a copy of ctx that tells [Client.Forward]
// which peers' forwarding headers to keep. An ingress puts it on the
// request's context before forwarding.
func WithTrustedProxies(ctx context.Context, t *TrustedProxies) context.Context {
	return context.WithValue(ctx, trustedKey{}, t)
}

// TrustedProxiesFrom returns the set ctx carries, or nil (trust no one).
func TrustedProxiesFrom(ctx context.Context) *TrustedProxies {
	t, _ := ctx.Value(trustedKey{}).(*TrustedProxies)
	return t
}

// OutgoingHeader returns the headers of r as relayed to an upstream: a
// copy without hop-by-hop headers, with the forwarding headers set.
//
// When r's peer is a trusted proxy, its X-Forwarded-For chain is kept and
// the peer appended, and its X-Forwarded-Host/-Proto are kept (set from r
// when absent). From any other peer, every client-sent X-Forwarded-*,
// Forwarded and X-Real-Ip header is dropped, since the client could have
// written anything there: X-Forwarded-For becomes the peer's address,
// X-Forwarded-Host r's Host and X-Forwarded-Proto r's scheme.
func OutgoingHeader(r *http.Request, trusted *TrustedProxies) http.Header {
	return outgoingHeader(r, r.Header.Clone(), trusted)
}

// outgoingHeader is [OutgoingHeader] on h, r's headers or a copy of them,
// which it changes.
func outgoingHeader(r *http.Request, h http.Header, trusted *TrustedProxies) http.Header {
	if h == nil {
		h = http.Header{}
	}
	RemoveHopByHop(h)
	peerTrusted := trusted.Trusts(r.RemoteAddr)
	if !peerTrusted {
		for name := range h {
			if hasPrefixFold(name, "x-forwarded-") {
				delete(h, name)
			}
		}
		h.Del("Forwarded")
		h.Del("X-Real-Ip")
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := h.Values("X-Forwarded-For"); len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		h.Set("X-Forwarded-For", ip)
	}
	if h.Get("X-Forwarded-Host") == "" && r.Host != "" {
		h.Set("X-Forwarded-Host", r.Host)
	}
	if h.Get("X-Forwarded-Proto") == "" {
		proto := "http"
		if r.TLS != nil {
			proto = "https"
		}
		h.Set("X-Forwarded-Proto", proto)
	}
	return h
}
