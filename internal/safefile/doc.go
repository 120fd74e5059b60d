// Package safefile opens files that live where a task can write (its
// sandbox) from processes that may run as root (the agent, the executors,
// the container launcher) without being redirected by what the task
// planted there.
//
// A task owns its sandbox directory, so it can replace stdout with a
// symlink to /etc/passwd, a hard link to a host file, a FIFO that blocks
// the opener for ever, or a directory. OpenAppend never follows a symlink
// in the last component, never blocks on a FIFO or device, and writes only
// into a regular file with a single link; anything else found under the
// name is unlinked (never written through) and a fresh file created in its
// place. The directories above the name must be ones the task cannot
// replace (the agent's runs/ directory is root's).
package safefile
