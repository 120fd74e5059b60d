// Package storetest is the conformance suite of frameworks.Store: every
// implementation (the local bbolt store, a ZooKeeper one) runs Run, so the
// apps and jobs frameworks see the same behaviour from each.
package storetest
