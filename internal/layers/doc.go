// Package layers holds the test that keeps the module's package layering
// as DESIGN.md draws it: the building blocks (scope, resource, tier and its
// stores, otel) never import the agentcache package, nor each other beyond
// what the design allows. It has no code of its own.
package layers
