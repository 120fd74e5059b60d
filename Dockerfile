# mesolite in a container: one image for `master`, `agent`, `apps`, `jobs`
# and `artifacts`, configured by MESOS_* variables (and each service's own
# flags) as Mesos's images were. The binaries are the static ones:
#
#   make static && docker build -t mesolite .
#
#   docker run -d --net=host -e MESOS_IP=10.0.0.1 -e MESOS_PORT=5050 \
#     -e MESOS_ZK=zk://10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181/mesos \
#     -e MESOS_WORK_DIR=/var/lib/mesolite/master -v /var/lib/mesolite/master:/var/lib/mesolite/master \
#     mesolite master
#
# docs/operations.md has the agent's line (it needs --privileged, the
# Docker socket, /sys/fs/cgroup and its work_dir at the same path inside
# and out) and those of apps and jobs.
#
# BASE must have a shell: command tasks run under `sh -c`. The tests build
# the image on a busybox base made FROM scratch.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
COPY bin/mesolite-static /usr/bin/mesolite
# The agent's helper (container inits, command and default executors): it
# must lie beside /usr/bin/mesolite.
COPY bin/mesolite-executor-static /usr/bin/mesolite-executor
ENTRYPOINT ["/usr/bin/mesolite"]
CMD ["--help"]
