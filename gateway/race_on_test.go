//go:build race

package gateway

// raceEnabled: the race detector inflates heap accounting, so allocation
// bounds are checked only without it (make test runs those tests twice).
const raceEnabled = true
