package gateway

import (
	"github.com/switchboard/switchboard/internal/megaphone"
	"github.com/switchboard/switchboard/internal/middleman"
	"github.com/switchboard/switchboard/internal/pipe"
	"github.com/switchboard/switchboard/internal/relayhttp"
	"github.com/switchboard/switchboard/internal/service"
)

// newServices builds every protocol the gateway serves.
func newServices(deps service.Deps) []namedService {
	return []namedService{
		{"megaphone", megaphone.NewService(deps)},
		{"pipe", pipe.New(deps)},
		{"middleman", middleman.New(deps)},
		{"relay", relayhttp.New(deps)},
	}
}
