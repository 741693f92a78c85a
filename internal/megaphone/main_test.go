package megaphone_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if url := os.Getenv(benchGatewayEnv); url != "" { // child of BenchmarkReaders
		os.Exit(runBenchGateway(url))
	}
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}
