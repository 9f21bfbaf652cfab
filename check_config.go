package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/fedgate/fedgate/gateway"
	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/gateway/remotewrite"
	"github.com/fedgate/fedgate/wal/head"
)

const checkConfigUsage = `usage: fedgate check-config [--tenant ID] [--series 'metric{label="value"}'] FILE

Validates FILE as fedgate would load it (secret files included). With
--series, prints what a push of that series by the tenant becomes after
the allowlist, relabel_configs, anonymization and the cluster label.
`

// checkConfig runs `fedgate check-config` and returns the exit code: 0 for
// a valid file, 1 for an invalid one (or series), 2 for a usage error.
func checkConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, checkConfigUsage) }
	series := fs.String("series", "", "A series in PromQL form to run through the tenant's pipeline.")
	tenant := fs.String("tenant", "", "The tenant pushing the series; needed when the file has several.")
	// Flags may come before or after the file.
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		files, args = append(files, fs.Arg(0)), fs.Args()[1:]
	}
	if len(files) != 1 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(files[0])
	if err == nil {
		_, err = gateway.NewSettings(cfg)
	}
	if err == nil {
		err = checkRing(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "FAILED: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK: %d tenants, %d allowlist selectors, %d global relabel rules, %d anonymized labels\n",
		files[0], len(cfg.Tenants), len(cfg.Allowlist), len(cfg.RelabelConfigs), len(cfg.Anonymize.Labels))
	if *series == "" {
		return 0
	}

	id := *tenant
	if id == "" && len(cfg.Tenants) == 1 {
		id = cfg.Tenants[0].ID
	}
	known := false
	for _, t := range cfg.Tenants {
		known = known || t.ID == id
	}
	if !known {
		fmt.Fprintf(stderr, "FAILED: --tenant %q is not a tenant of %s\n", id, files[0])
		return 1
	}
	in, err := parser.ParseMetric(*series)
	if err != nil {
		fmt.Fprintf(stderr, "FAILED: --series: %v\n", err)
		return 1
	}
	var ls []remotewrite.Label
	in.Range(func(l labels.Label) { ls = append(ls, remotewrite.Label{Name: l.Name, Value: l.Value}) })
	settings, _ := gateway.NewSettings(cfg) // valid: checked above
	stored, dropped, refused := settings.CheckSeries(id, ls)
	fmt.Fprintf(stdout, "tenant %s pushes %s\n", id, *series)
	switch {
	case dropped != "":
		fmt.Fprintf(stdout, "  dropped (%s): not stored, answered 204\n", dropped)
	case refused != nil:
		fmt.Fprintf(stdout, "  refused, answered 400: %v\n", refused)
	default:
		fmt.Fprintf(stdout, "  stored as %s\n", render(stored))
	}
	return 0
}

// render writes a stored label set as name{label="value", ...}.
func render(ls head.Labels) string {
	var b strings.Builder
	b.WriteString(ls.Get(labels.MetricName))
	b.WriteByte('{')
	first := true
	for it := ls.Iter(); it.Next(); {
		if it.Name == labels.MetricName {
			continue
		}
		if !first {
			b.WriteString(", ")
		}
		first = false
		b.WriteString(it.Name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(it.Value))
	}
	b.WriteByte('}')
	return b.String()
}
