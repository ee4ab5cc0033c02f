// go-http-auth v0.4.0 predates modules; a folder that replaces a module needs a go.mod.
// Its imports (golang.org/x/crypto, golang.org/x/net) resolve to the versions Traefik uses.
module github.com/abbot/go-http-auth

go 1.17
