// Package jobs is mesolite's built-in cron, a framework that speaks
// Chronos's REST API so existing job definitions, scripts and client
// libraries work unchanged.
//
//   - Schedule is Chronos's ISO 8601 repeating interval,
//     R[n]/[start]/period, with scheduleTimeZone; Period is an ISO 8601
//     duration (a schedule's period, a job's epsilon).
//   - Job is a job definition in Chronos's JSON shape; Validate checks it.
//   - Service keeps jobs, and their runs queued or in flight, in a
//     frameworks.Store, serves the REST API and runs due jobs as tasks
//     through a frameworks.Driver.
//   - RunHA runs one of several instances on ZooKeeper (--zk_hosts)
//     through frameworks/ha: a standby answers 307 to the leader, the
//     leader builds a Service from the state in ZooKeeper and takes over
//     the old leader's runs by task id.
package jobs
