// Package jobs is mesolite's built-in cron, a framework that speaks
// Chronos's REST API so existing job definitions, scripts and client
// libraries work unchanged.
//
//   - Schedule is Chronos's ISO 8601 repeating interval,
//     R[n]/[start]/period, with scheduleTimeZone; Period is an ISO 8601
//     duration (a schedule's period, a job's epsilon).
//   - Job is a job definition in Chronos's JSON shape; Validate checks it.
//   - Service keeps jobs in a frameworks.Store, serves the REST API and
//     runs due jobs as tasks through a frameworks.Driver.
package jobs
