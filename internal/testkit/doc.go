// Package testkit is what lnm's tests share: certificates made at run time, TLS echo servers
// and plain backends on loopback, free ports, golden files behind one -update flag, and the
// goroutine-leak check every package that starts goroutines runs from its TestMain.
//
// It is internal and imported only by _test.go files: nothing here is part of the box.
package testkit
