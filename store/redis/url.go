package redis

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// ParseURL builds a client from a Redis URL (the --redis-url setting). The caller owns the client and
// closes it. The forms:
//
//	redis://[user:password@]host:port[/db][?options]          one server
//	rediss://…                                                  the same over TLS
//	unix://[user:password@]/path/to/redis.sock[?db=N&options]  one server on a Unix socket
//	redis-sentinel://[user:password@]host1:26379,host2:26379[/db]?master_name=mymaster[&options]
//	redis://host1:26379,host2:26379[/db]?master_name=mymaster  the same: master_name means Sentinel
//	rediss-sentinel://…                                         Sentinel, TLS to the master and sentinels
//	redis-cluster://[user:password@]host1:7000,host2:7001[?options]   Cluster (seed nodes)
//	rediss-cluster://…                                          Cluster over TLS
//
// Options are go-redis's, in snake case: dial_timeout, read_timeout, write_timeout (durations such as
// 500ms, or plain seconds), max_retries, pool_size, client_name, protocol, skip_verify, and so on;
// an unknown option is an error. Without them go-redis's defaults apply: dial 5 s, read and write 3 s,
// 3 retries, so a dead server turns into errors within seconds, never a hang.
//
// In the Sentinel forms user:password@ authenticates to the sentinels (as in go-redis's
// ParseFailoverURL); the master's credentials, when it has its own, go in the username and password
// options. Several hosts without master_name and without -cluster are refused as ambiguous.
//
// Errors never repeat the URL, which may hold a password.
func ParseURL(rawURL string) (goredis.UniversalClient, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, errors.New("redis: URL has no scheme://")
	}
	// The authority runs to the first '/' or '?'; split it by hand, as net/url does not parse a
	// comma-separated host list (with IPv6 literals in it, for one).
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hostlist := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hostlist = authority[:i+1], authority[i+1:]
	}
	hosts := strings.Split(hostlist, ",")

	// rebuild makes a single-host URL of the given scheme, the other hosts as addr= options.
	rebuild := func(scheme string) string {
		u := scheme + "://" + userinfo + hosts[0] + tail
		if len(hosts) == 1 {
			return u
		}
		extra := url.Values{"addr": hosts[1:]}.Encode()
		if strings.Contains(tail, "?") {
			return u + "&" + extra
		}
		return u + "?" + extra
	}
	sentinel := func(scheme string) (goredis.UniversalClient, error) {
		o, err := goredis.ParseFailoverURL(rebuild(scheme))
		if err != nil {
			return nil, urlError(err)
		}
		if o.MasterName == "" {
			return nil, errors.New("redis: a Sentinel URL needs master_name")
		}
		return goredis.NewFailoverClient(o), nil
	}
	cluster := func(scheme string) (goredis.UniversalClient, error) {
		o, err := goredis.ParseClusterURL(rebuild(scheme))
		if err != nil {
			return nil, urlError(err)
		}
		return goredis.NewClusterClient(o), nil
	}

	switch scheme {
	case "redis", "rediss":
		if q, err := url.ParseQuery(queryOf(tail)); err == nil && q.Get("master_name") != "" {
			return sentinel(scheme)
		}
		if len(hosts) > 1 {
			return nil, errors.New("redis: several hosts need redis-cluster:// or a master_name for Sentinel")
		}
		fallthrough
	case "unix":
		o, err := goredis.ParseURL(rawURL)
		if err != nil {
			return nil, urlError(err)
		}
		return goredis.NewClient(o), nil
	case "redis-sentinel":
		return sentinel("redis")
	case "rediss-sentinel":
		return sentinel("rediss")
	case "redis-cluster":
		return cluster("redis")
	case "rediss-cluster":
		return cluster("rediss")
	default:
		return nil, fmt.Errorf("redis: unknown URL scheme %q", scheme)
	}
}

// queryOf returns what follows the '?' of a URL tail, without a fragment.
func queryOf(tail string) string {
	_, q, _ := strings.Cut(tail, "?")
	q, _, _ = strings.Cut(q, "#")
	return q
}

// urlError drops the URL from a parse error, as it may hold a password.
func urlError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("redis: invalid URL: %w", err)
}
