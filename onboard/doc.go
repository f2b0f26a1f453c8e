// Package onboard turns what a plant already has into rules, without touching a running box:
// imports of the retired product's Lnm custom resource (lnm.go) and of dnsmasq files
// (dnsmasq.go), the vendor presets (presets.go), and rules suggested from what learn mode
// recorded (suggest.go). The CLI shows the result and adds the rules through the admin API
// or the managed file.
package onboard
