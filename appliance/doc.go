// Package appliance is the running box: it builds the data path (resolver servers and
// forwarders, one per listen address) from a config.Config, wires the audit trail (store and
// log), serves the admin API and the metrics, and swaps the whole data path on reload, which
// commits whole or changes nothing.
//
// Where things go:
//   - runtime.go: Start, the plan that turns a Config into component configs (a new
//     directive that the data path reads is wired here), Close.
//   - reload.go: Reload and SetLearn, the checked swap.
//   - decide.go: Decide, the box's decision for `lnm allow test`, from the components' own.
//   - trail.go: the audit trail, records from resolver and forwarder events.
//   - metrics.go: every Prometheus metric (a new metric is a field of boxMetrics, registered
//     in newBoxMetrics and counted where its event is).
//   - admin.go, admin_allow.go: the admin API's handlers; its wire contract (paths, request
//     and reply types, the client) is package adminapi, where a new endpoint starts.
//
// The config language lives in package config, onboarding tools in package onboard.
package appliance
