// Package builtin is what both binaries that run the built-in executors
// share: `mesolite` and the lean `mesolite-executor` the agent prefers for
// its container inits and command and default executors (see
// cmd/mesolite-executor). Executor runs one by name (the hidden `executor`
// subcommand); Launch is the container init (the hidden `launch`), which a
// prestarted init whose executor is one of these, in the same binary,
// becomes in place.
package builtin
