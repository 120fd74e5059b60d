package launch

// extraIsolations are the isolated variants measured beside posix.
var extraIsolations = map[string]containerizerFactory{}
