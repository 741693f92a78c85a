package gateway

import (
	"github.com/switchboard/switchboard/internal/pipe"
	"github.com/switchboard/switchboard/internal/service"
)

// newServices builds every protocol the gateway serves.
func newServices(deps service.Deps) []service.Service {
	return []service.Service{
		pipe.New(deps),
	}
}
