package redis_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/voiceotp/voiceotp/store/redis"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		name string
		url  string
		// check inspects the client; nil means only the type is checked.
		kind  string
		check func(t *testing.T, c goredis.UniversalClient)
	}{
		{"Single", "redis://localhost:6390/2?dial_timeout=1s&read_timeout=500ms", "single", func(t *testing.T, c goredis.UniversalClient) {
			o := c.(*goredis.Client).Options()
			if o.Addr != "localhost:6390" || o.DB != 2 || o.ReadTimeout.String() != "500ms" || o.TLSConfig != nil {
				t.Errorf("options = addr %s db %d read %v tls %v", o.Addr, o.DB, o.ReadTimeout, o.TLSConfig != nil)
			}
		}},
		{"SingleTLSWithAuth", "rediss://app:pw@cache.example:6380/0", "single", func(t *testing.T, c goredis.UniversalClient) {
			o := c.(*goredis.Client).Options()
			if o.Addr != "cache.example:6380" || o.TLSConfig == nil || o.Username != "app" || o.Password != "pw" {
				t.Errorf("options = addr %s tls %v user %q", o.Addr, o.TLSConfig != nil, o.Username)
			}
		}},
		{"UnixSocket", "unix:///run/redis.sock?db=3", "single", func(t *testing.T, c goredis.UniversalClient) {
			o := c.(*goredis.Client).Options()
			if o.Network != "unix" || o.Addr != "/run/redis.sock" || o.DB != 3 {
				t.Errorf("options = %s %s db %d", o.Network, o.Addr, o.DB)
			}
		}},
		{"SentinelScheme", "redis-sentinel://s1:26379,s2:26379,[::1]:26379/1?master_name=mymaster", "sentinel", nil},
		{"SentinelByMasterName", "redis://s1:26379,s2:26379/0?master_name=mymaster", "sentinel", nil},
		{"SentinelOneHost", "redis://s1:26379?master_name=mymaster", "sentinel", nil},
		{"Cluster", "redis-cluster://n1:7000,n2:7001,[::1]:7002?read_timeout=1s", "cluster", func(t *testing.T, c goredis.UniversalClient) {
			o := c.(*goredis.ClusterClient).Options()
			if want := []string{"n1:7000", "n2:7001", "[::1]:7002"}; !slices.Equal(o.Addrs, want) || o.TLSConfig != nil {
				t.Errorf("addrs = %v tls %v, want %v", o.Addrs, o.TLSConfig != nil, want)
			}
		}},
		{"ClusterTLS", "rediss-cluster://u:pw@n1:7000", "cluster", func(t *testing.T, c goredis.UniversalClient) {
			o := c.(*goredis.ClusterClient).Options()
			if o.TLSConfig == nil || o.Password != "pw" || len(o.Addrs) != 1 {
				t.Errorf("tls %v addrs %v", o.TLSConfig != nil, o.Addrs)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := redis.ParseURL(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			kind := "single"
			switch cc := c.(type) {
			case *goredis.ClusterClient:
				kind = "cluster"
			case *goredis.Client:
				if cc.Options().Addr == "FailoverClient" {
					kind = "sentinel"
				}
			}
			if kind != tc.kind {
				t.Fatalf("%T (%s), want %s", c, kind, tc.kind)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestParseURLRefuses(t *testing.T) {
	tests := []struct {
		name string
		url  string
	}{
		{"NoScheme", "localhost:6379"},
		{"UnknownScheme", "http://s3cret@localhost"},
		{"SeveralHostsAmbiguous", "redis://u:s3cret@h1:6379,h2:6379"},
		{"SentinelWithoutMaster", "redis-sentinel://u:s3cret@h1:26379"},
		{"UnknownOption", "redis://u:s3cret@h1:6379/0?bogus=1"},
		{"BadPort", "redis://u:s3cret@h1:port"},
		{"BadDB", "redis://u:s3cret@h1:6379/x"},
		{"ClusterBadOption", "redis-cluster://u:s3cret@h1:7000?bogus=1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := redis.ParseURL(tc.url)
			if err == nil {
				_ = c.Close()
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error repeats the password: %v", err)
			}
		})
	}
}

func ExampleParseURL() {
	for _, u := range []string{
		"redis://localhost:6379/0",
		"redis-sentinel://s1:26379,s2:26379/0?master_name=mymaster",
		"redis-cluster://n1:7000,n2:7001,n3:7002",
	} {
		c, err := redis.ParseURL(u)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%T\n", c)
		_ = c.Close()
	}
	// Output:
	// *redis.Client
	// *redis.Client
	// *redis.ClusterClient
}
