// Package detector finds the leading master, and lets a master stand for
// election, the way Mesos does it.
//
// A --master flag takes one of three forms, as with Mesos:
//
//	host:port                        one master, no election (also master@host:port)
//	zk://[user:pass@]h1:2181,h2/path ZooKeeper: the leader is the lowest sequence under path
//	file:///etc/mesos/master         a file holding one of the two forms above
//
// Under ZooKeeper each master contends by creating an ephemeral sequential
// znode `<path>/json.info_<seq>` holding its MasterInfo as JSON (Mesos's
// format since 0.24, so Mesos tools and mesolite find each other's
// masters); the contender with the lowest sequence leads. When its session
// ends the znode vanishes and the next one leads. Nodes with the older
// labels (`info_<seq>`, binary MasterInfo) and unlabelled ones (a bare
// libprocess PID) are understood too.
package detector
