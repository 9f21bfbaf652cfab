// Package headtest holds what the tests of packages that read a head share.
//
// It owns only test helpers; production code never imports it.
package headtest
