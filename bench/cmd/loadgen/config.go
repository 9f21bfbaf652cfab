package main

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Config is one load run.
type Config struct {
	URL              string
	Tenants          int
	SeriesPerTenant  int
	SeriesPerRequest int
	Concurrency      int
	Rounds           int
	WarmupRounds     int
	HalfRounds       int     // paced rounds after the measured ones; 0: none
	Rate             float64 // samples/s the measured rounds are paced at; 0: as fast as possible
	Auth             string  // bearer, basic or none
	TenantLabel      string
	PID              int
	Interval         time.Duration
	Timeout          time.Duration
	// LogSlow, if set, prints each request slower than it, with the time it
	// was due, so that stalls can be lined up with the receiver's logs.
	LogSlow time.Duration
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.URL == "":
		return errors.New("-url is empty")
	case c.Tenants < 1 || c.Tenants > 1000:
		return fmt.Errorf("-tenants %d: want 1..1000", c.Tenants)
	case c.SeriesPerTenant < 1:
		return fmt.Errorf("-series-per-tenant %d: want > 0", c.SeriesPerTenant)
	case c.SeriesPerRequest < 1:
		return fmt.Errorf("-series-per-request %d: want > 0", c.SeriesPerRequest)
	case c.Concurrency < 1:
		return fmt.Errorf("-concurrency %d: want > 0", c.Concurrency)
	case c.Rounds < 1:
		return fmt.Errorf("-rounds %d: want > 0", c.Rounds)
	case c.WarmupRounds < 0:
		return fmt.Errorf("-warmup-rounds %d: want >= 0", c.WarmupRounds)
	case c.HalfRounds < 0:
		return fmt.Errorf("-half-rounds %d: want >= 0", c.HalfRounds)
	case !(c.Rate >= 0) || math.IsInf(c.Rate, 1):
		return fmt.Errorf("-rate %g: want a finite number >= 0", c.Rate)
	case c.Interval <= 0:
		return fmt.Errorf("-interval %s: want > 0", c.Interval)
	case c.Timeout <= 0:
		return fmt.Errorf("-timeout %s: want > 0", c.Timeout)
	case c.LogSlow < 0:
		return fmt.Errorf("-log-slow %s: want >= 0", c.LogSlow)
	}
	switch c.Auth {
	case "bearer", "basic", "none":
	default:
		return fmt.Errorf("-auth %q: want bearer, basic or none", c.Auth)
	}
	return nil
}

func tenantID(i int) string    { return fmt.Sprintf("t-%03d", i) }
func tenantToken(i int) string { return fmt.Sprintf("tok-%03d", i) }
