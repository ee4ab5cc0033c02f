// Added to the copy of github.com/abbot/go-http-auth v0.4.0 that the Traefik build uses (see
// build.sh): the two functions Traefik calls that only its fork
// (github.com/containous/go-http-auth, which the module proxy does not serve) has. Only the
// BasicAuth and DigestAuth middlewares reach them; the benchmark configures neither.
package auth

import (
	"net/http"
	"strings"
)

// CheckSecret reports whether password matches secret, an htpasswd entry (MD5-crypt, {SHA}
// or bcrypt), the way BasicAuth.CheckAuth compares them.
func CheckSecret(password, secret string) bool {
	compare := compareFuncs[0].compare
	for _, cmp := range compareFuncs[1:] {
		if strings.HasPrefix(secret, cmp.prefix) {
			compare = cmp.compare
			break
		}
	}
	return compare([]byte(secret), []byte(password)) == nil
}

// RequireAuthStale answers a request whose nonce expired with a fresh challenge, as
// RequireAuth does (the fork also marks it `stale=true`, sparing the client a prompt).
func (a *DigestAuth) RequireAuthStale(w http.ResponseWriter, r *http.Request) {
	a.RequireAuth(w, r)
}
