// Package ext stands in for Traefik's dynamic-configuration extension point
// (github.com/traefik/traefik/dynamic/ext), a nested module of Traefik's repository that
// neither its module zip nor the module proxy carries. Open-source Traefik embeds these
// types, empty, in dynamic.HTTP and dynamic.Router; nothing else uses them at v3.7.x.
package ext

// HTTP is embedded in Traefik's dynamic.HTTP; it adds no fields.
type HTTP struct{}

// Router is embedded in Traefik's dynamic.Router; it adds no fields.
type Router struct{}
