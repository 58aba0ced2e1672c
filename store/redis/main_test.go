package redis_test

import (
	"os"
	"testing"

	"github.com/voiceotp/voiceotp/store/redis/redistest"
)

// srv is the redis-server shared by the tests of this binary, or nil when there is none (then the
// tests skip). Tests that kill or freeze a server start their own.
var srv *redistest.Server

func TestMain(m *testing.M) { os.Exit(redistest.Main(m, &srv)) }
