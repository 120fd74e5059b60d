// Package validate holds the checks every entry point applies to what a
// framework, an executor, an agent or an operator sends before it is used:
// ids are names, never paths (they become directory names of the sandbox,
// cgroup names and keys of the registry), and free text has a size cap so
// that no peer can grow a master's or an agent's memory at will.
//
// Both the master and the agent call the same functions, so an id refused
// at one door is refused at every door.
package validate
