// Replaces lego's providers/dns/zz_gen_dns_providers.go in the copy of lego that the
// Traefik build uses (see build.sh): that file imports a client library for each of lego's
// ~180 DNS services, and the module proxy this project can reach does not serve about a
// dozen of them, so Traefik's command could not be built. Only ACME's DNS-01 challenge
// reaches this function; the benchmark serves a fixed certificate and never uses it.
package dns

import (
	"fmt"

	"github.com/go-acme/lego/v5/challenge"
)

// NewDNSChallengeProviderByName always fails in this build.
func NewDNSChallengeProviderByName(name string) (challenge.Provider, error) {
	return nil, fmt.Errorf("ACME DNS provider %q: not built into portico-bench's Traefik", name)
}
